//! Which keys the snapshot tables may hold.
//!
//! Every new triplet misses memory and would then probe the snapshot in
//! SQLite: two statements per decision for an answer that is almost always
//! "not there". A Bloom filter over the snapshot's keys answers that in
//! memory; only a "maybe" goes to SQLite. False positives cost a probe,
//! never a wrong answer; a false negative is impossible as long as every
//! key that enters the snapshot is inserted, which [`super::state`] does
//! for its own compaction, for another process's (evicted keys), and by a
//! full rebuild when it cannot know.

use fastbloom::BloomFilter;
use rusqlite::Connection;

use crate::TripletKey;

/// Keys the filter is sized for at least.
const MIN_CAPACITY: usize = 1 << 20;
/// Wanted false-positive rate while within capacity.
const FALSE_POSITIVES: f64 = 0.01;

pub(super) struct SnapshotFilter {
    triplets: BloomFilter,
    clients: BloomFilter,
    capacity: usize,
    inserted: usize,
}

impl SnapshotFilter {
    /// Build from every key in the snapshot tables.
    pub fn load(conn: &Connection) -> rusqlite::Result<SnapshotFilter> {
        let rows: i64 =
            conn.query_row("SELECT (SELECT COUNT(*) FROM triplets) + (SELECT COUNT(*) FROM clients)", [], |r| {
                r.get(0)
            })?;
        let capacity = MIN_CAPACITY.max(2 * usize::try_from(rows).unwrap_or(0));
        let mut filter = SnapshotFilter {
            triplets: BloomFilter::with_false_pos(FALSE_POSITIVES).expected_items(capacity),
            clients: BloomFilter::with_false_pos(FALSE_POSITIVES).expected_items(capacity / 8 + 1),
            capacity,
            inserted: 0,
        };
        let mut stmt = conn.prepare("SELECT client, sender, recipient FROM triplets")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            filter.add_triplet(&TripletKey { client: r.get(0)?, sender: r.get(1)?, recipient: r.get(2)? });
        }
        let mut stmt = conn.prepare("SELECT client FROM clients")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            filter.add_client(r.get_ref(0)?.as_str()?);
        }
        Ok(filter)
    }

    pub fn add_triplet(&mut self, key: &TripletKey) {
        self.triplets.insert(key);
        self.inserted += 1;
    }

    pub fn add_client(&mut self, client: &str) {
        self.clients.insert(client);
        self.inserted += 1;
    }

    /// False means the snapshot certainly has no row for `key`.
    pub fn may_hold_triplet(&self, key: &TripletKey) -> bool {
        self.triplets.contains(key)
    }

    pub fn may_hold_client(&self, client: &str) -> bool {
        self.clients.contains(client)
    }

    /// Past its capacity the false-positive rate climbs; rebuild bigger.
    pub fn is_full(&self) -> bool {
        self.inserted > self.capacity
    }
}
