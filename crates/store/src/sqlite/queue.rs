//! The writer's job queue, and when its thread is woken.
//!
//! Waking the writer for the first decision of a burst makes it commit
//! that decision nearly alone, then the next few, and so on: many small
//! transactions, each paying SQLite's locks and WAL frames, and a wake-up
//! (often a preemption on a small machine) for every one. A serving thread
//! that parks its async runtime's worker calls [`wake_deferred`] from the
//! runtime's park hook, so decisions queued while it was busy wake the
//! writer once, when it has nothing else to do, and are committed together.
//! Nothing waits for a timer: the wake comes when the thread would sleep.
//!
//! [`KICK_AT`] queued decisions also wake the writer, so that under load
//! the writer commits a batch while the serving thread goes on reading the
//! next requests. Measured with 32 policy connections against waking at
//! every decision: about half the transactions (SQLite lock calls), 40%
//! fewer context switches and 10% less CPU per request. The best number
//! follows the serving thread's cost per request: 8 beat 4 and 64 when that
//! cost was higher; once it fell by a fifth, 16 beat 8 in 5 of 5
//! interleaved runs (+16% requests/s, p99 -13%), and 32 was between them.
//!
//! Deferral is only used on threads whose park hook has been seen to run
//! (a thread calls [`wake_deferred`] at least once before it defers), so a
//! runtime without the hook, or a blocking thread, wakes the writer at
//! once. A writer that was busy recently also polls the queue every
//! [`POLL`], so a busy thread that rarely parks holds no decision back
//! for longer than that.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::writer::Job;

/// Queued decisions that wake the writer even before the park.
pub(super) const KICK_AT: usize = 16;
/// How often a recently busy writer looks at the queue without a wake.
pub(super) const POLL: Duration = Duration::from_millis(2);
/// How long after its last job the writer keeps polling.
const POLL_FOR: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's runtime calls [`wake_deferred`] when it parks.
    static PARK_HOOK: Cell<bool> = const { Cell::new(false) };
    /// Queues with deferred wakes from this thread.
    static DEFERRED: RefCell<Vec<Weak<JobQueue>>> = const { RefCell::new(Vec::new()) };
}

/// Wake the writers this thread queued decisions for without waking them.
/// Call from the async runtime's `on_thread_park` hook.
pub fn wake_deferred() {
    PARK_HOOK.with(|h| h.set(true));
    let queues = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
    for queue in queues.iter().filter_map(Weak::upgrade) {
        queue.kick();
    }
}

#[derive(Default)]
struct Inner {
    jobs: VecDeque<Job>,
    /// The writer is blocked in [`JobQueue::wait`] and has not been sent
    /// a wake since it started waiting.
    waiting: bool,
    /// ... with no timeout: only a wake brings it back.
    waiting_forever: bool,
    closed: bool,
}

impl Inner {
    /// The writer has been sent a wake: until it waits again, pushes need
    /// not wake it (each wake is a futex call, and a writer that was woken
    /// but has not run yet would otherwise collect one per push).
    fn notified(&mut self) {
        self.waiting = false;
        self.waiting_forever = false;
    }
}

/// What [`JobQueue::wait`] found.
pub(super) enum Waited {
    Job(Job),
    Timeout,
    Closed,
}

/// Jobs for the writer thread, with the writer's wake-ups under control.
#[derive(Default)]
pub(super) struct JobQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a job; `false` once the queue is closed. A decision (`defer`)
    /// queued on a thread with the park hook wakes the writer only at the
    /// park, unless the writer would otherwise sleep without a timeout.
    pub fn push(self: &Arc<Self>, job: Job, defer: bool) -> bool {
        let mut inner = self.lock();
        if inner.closed {
            return false;
        }
        inner.jobs.push_back(job);
        let defer = defer && !inner.waiting_forever && inner.jobs.len() < KICK_AT && PARK_HOOK.with(Cell::get);
        let wake = inner.waiting && !defer;
        if wake {
            inner.notified();
        }
        drop(inner);
        if wake {
            self.ready.notify_one();
        } else if defer {
            DEFERRED.with(|d| {
                let mut d = d.borrow_mut();
                if !d.iter().any(|q| std::ptr::eq(q.as_ptr(), Arc::as_ptr(self))) {
                    d.push(Arc::downgrade(self));
                }
            });
        }
        true
    }

    fn kick(&self) {
        let mut inner = self.lock();
        let wake = inner.waiting && !inner.jobs.is_empty();
        if wake {
            inner.notified();
        }
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Take the next job without waiting.
    pub fn try_pop(&self) -> Option<Job> {
        self.lock().jobs.pop_front()
    }

    /// Wait for a job, at most `timeout` (`None`: until one comes). A
    /// writer busy within the last second polls every [`POLL`] anyway, for
    /// decisions whose wake is deferred to a park that is slow to come.
    pub fn wait(&self, timeout: Option<Duration>, last_job: Instant) -> Waited {
        let started = Instant::now();
        let mut inner = self.lock();
        loop {
            if let Some(job) = inner.jobs.pop_front() {
                return Waited::Job(job);
            }
            if inner.closed {
                return Waited::Closed;
            }
            let left = timeout.map(|t| t.saturating_sub(started.elapsed()));
            if left == Some(Duration::ZERO) {
                return Waited::Timeout;
            }
            let polling = last_job.elapsed() < POLL_FOR;
            let nap = match (left, polling) {
                (Some(left), true) => Some(left.min(POLL)),
                (Some(left), false) => Some(left),
                (None, true) => Some(POLL),
                (None, false) => None,
            };
            inner.waiting = true;
            inner.waiting_forever = nap.is_none();
            inner = match nap {
                Some(nap) => self.ready.wait_timeout(inner, nap).unwrap_or_else(|p| p.into_inner()).0,
                None => self.ready.wait(inner).unwrap_or_else(|p| p.into_inner()),
            };
            inner.waiting = false;
            inner.waiting_forever = false;
        }
    }

    /// No more jobs; the writer finishes the queued ones and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The writer has stopped: refuse new jobs and drop queued ones, so
    /// their callers get an error instead of waiting forever.
    pub fn abandon(&self) {
        let jobs = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.jobs)
        };
        drop(jobs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::Run(Box::new(|_, _| {}))
    }

    #[test]
    fn without_the_park_hook_a_push_wakes_the_writer_at_once() {
        let queue = Arc::new(JobQueue::default());
        let q = queue.clone();
        let writer = std::thread::spawn(move || {
            // Not recently busy: it sleeps until woken.
            let long_ago = Instant::now() - 2 * POLL_FOR;
            matches!(q.wait(None, long_ago), Waited::Job(_))
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(queue.push(job(), true));
        assert!(writer.join().unwrap());
    }

    #[test]
    fn with_the_park_hook_decisions_wake_the_writer_at_the_park() {
        let deferred = || DEFERRED.with(|d| d.borrow().len());
        let queue = Arc::new(JobQueue::default());
        // A writer that is polling (busy a moment ago).
        let q = queue.clone();
        let writer = std::thread::spawn(move || matches!(q.wait(None, Instant::now()), Waited::Job(_)));
        std::thread::sleep(Duration::from_millis(20));
        // No park hook seen on this thread yet: no deferral.
        assert!(queue.push(job(), true));
        assert_eq!(deferred(), 0);
        assert!(writer.join().unwrap());

        wake_deferred(); // this thread's runtime parks with the hook
        let q = queue.clone();
        let writer = std::thread::spawn(move || matches!(q.wait(None, Instant::now()), Waited::Job(_)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(queue.push(job(), true));
        assert!(queue.push(job(), true));
        assert_eq!(deferred(), 1, "the wake is left to the park, once per queue");
        wake_deferred();
        assert_eq!(deferred(), 0);
        assert!(writer.join().unwrap());
        assert!(queue.try_pop().is_some(), "the writer took one; the other is still queued");
        // Other jobs (admin commands) never wait for the park.
        assert!(queue.push(job(), false));
        assert_eq!(deferred(), 0);
    }

    #[test]
    fn a_waiting_writer_is_sent_one_wake_however_many_jobs_come_before_it_runs() {
        let queue = Arc::new(JobQueue::default());
        // As if the writer were blocked in `wait` (no thread: the wake
        // goes nowhere, and the writer cannot clear the flag itself).
        queue.lock().waiting = true;
        assert!(queue.push(job(), false));
        assert!(!queue.lock().waiting, "the first job wakes the writer; later ones need not");
        assert!(queue.push(job(), false));
        assert_eq!(queue.lock().jobs.len(), 2);

        queue.lock().waiting = true;
        queue.kick();
        assert!(!queue.lock().waiting, "a kick counts as the wake too");
    }

    #[test]
    fn a_closed_queue_refuses_jobs_and_ends_the_wait() {
        let queue = Arc::new(JobQueue::default());
        queue.push(job(), false);
        queue.close();
        assert!(!queue.push(job(), false));
        assert!(matches!(queue.wait(None, Instant::now()), Waited::Job(_)), "queued jobs are finished");
        assert!(matches!(queue.wait(None, Instant::now()), Waited::Closed));
    }
}
