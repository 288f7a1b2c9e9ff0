//! A private Postfix instance: own config, queue and mail directories in a
//! temp dir, SMTP on a loopback port, delivery into a Maildir.
//!
//! It plays both roles a user gives Postfix next to greygate: a policy
//! client (`check_policy_service`) and the downstream MTA. XCLIENT is
//! allowed from loopback so tests can present remote client addresses
//! (swaks `--xclient-addr`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{free_port, require, wait_for};

/// What to configure beyond the defaults.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// `check_policy_service` target, e.g. `inet:127.0.0.1:10023`.
    pub policy: Option<String>,
    /// Extra `main.cf` lines.
    pub main_cf: Vec<String>,
    /// SMTP AUTH (Cyrus SASL, PLAIN and LOGIN, from a private sasldb)
    /// for these `(user@realm, password)` pairs.
    pub sasl_users: Vec<(String, String)>,
}

/// A running Postfix.
pub struct Postfix {
    dir: tempfile::TempDir,
    child: Child,
    /// SMTP port on 127.0.0.1.
    pub port: u16,
}

/// The only domain this Postfix delivers (to one Maildir).
pub const DOMAIN: &str = "test.example";

impl Postfix {
    pub fn start(options: &Options) -> Postfix {
        require("/usr/sbin/postfix", "postfix");
        let dir = tempfile::Builder::new().prefix("greygate-postfix-").tempdir().expect("temp dir");
        let d = dir.path();
        for sub in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        chown(&d.join("data"), "postfix");
        chown(&d.join("mail"), "nobody");
        // Postfix refuses to run from a world-writable directory chain.
        set_mode(d, 0o755);
        let port = free_port();
        let sasl = if options.sasl_users.is_empty() { String::new() } else { sasl_setup(d, &options.sasl_users) };
        let restrictions = match &options.policy {
            Some(p) => format!("reject_unauth_destination, check_policy_service {p}"),
            None => "reject_unauth_destination".into(),
        };
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {q}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_recipient_restrictions = {restrictions}
smtpd_policy_service_timeout = 10s
maillog_file = {log}
maillog_file_prefixes = /tmp, /var
shlib_directory = /usr/lib/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
{sasl}
{extra}
",
            q = d.join("queue").display(),
            data = d.join("data").display(),
            mail = d.join("mail").display(),
            log = d.join("maillog").display(),
            extra = options.main_cf.join("\n"),
        );
        std::fs::write(d.join("etc/main.cf"), main_cf).expect("main.cf");
        std::fs::write(d.join("etc/master.cf"), master_cf(port)).expect("master.cf");
        let child = Command::new("/usr/sbin/postfix")
            .args(["-c", d.join("etc").to_str().expect("utf-8"), "start-fg"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postfix");
        let mut postfix = Postfix { dir, child, port };
        wait_for("postfix to listen", Duration::from_secs(30), || {
            if let Ok(Some(status)) = postfix.child.try_wait() {
                panic!("postfix exited with {status} before listening; maillog:\n{}", postfix.log());
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        postfix
    }

    /// Everything Postfix logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Delivered messages (Maildir `new/`), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail/inbox/new");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&new).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        files.sort();
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect()
    }

    /// Wait until at least `n` messages were delivered.
    pub fn wait_messages(&self, n: usize) -> Vec<String> {
        wait_for(&format!("{n} delivered messages"), Duration::from_secs(30), || {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
    }

    fn master_pid(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(self.dir.path().join("queue/pid/master.pid")).ok()?;
        text.trim().parse().ok().map(Pid::from_raw)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // `postfix start-fg` runs master as its child; stop master by the
        // PID it wrote, then reap the launcher.
        if let Some(pid) = self.master_pid() {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn master_cf(port: u16) -> String {
    // chroot off everywhere: the queue directory is a temp dir.
    format!(
        "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
    )
}

/// A sasldb with `users` and the Cyrus config pointing at it; returns the
/// `main.cf` lines that turn SMTP AUTH on.
fn sasl_setup(d: &Path, users: &[(String, String)]) -> String {
    require("/usr/sbin/saslpasswd2", "sasl2-bin");
    let sasl = d.join("sasl");
    std::fs::create_dir_all(&sasl).expect("mkdir sasl");
    let db = sasl.join("sasldb2");
    for (login, password) in users {
        let (user, realm) = login.split_once('@').expect("user@realm");
        let mut child = Command::new("/usr/sbin/saslpasswd2")
            .args(["-p", "-c", "-f", db.to_str().expect("utf-8"), "-u", realm, user])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run saslpasswd2");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(password.as_bytes()).expect("password");
        assert!(child.wait().expect("saslpasswd2").success(), "saslpasswd2 failed");
    }
    chown(&db, "postfix");
    // Debian's Postfix reads $config_directory/sasl/smtpd.conf and ignores
    // cyrus_sasl_config_path; others use the latter. Write both.
    let conf = format!(
        "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {}\n",
        db.display()
    );
    std::fs::create_dir_all(d.join("etc/sasl")).expect("mkdir etc/sasl");
    std::fs::write(d.join("etc/sasl/smtpd.conf"), &conf).expect("smtpd.conf");
    std::fs::write(sasl.join("smtpd.conf"), &conf).expect("smtpd.conf");
    format!(
        "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus\nsmtpd_sasl_path = smtpd\ncyrus_sasl_config_path = {}\nsmtpd_tls_auth_only = no",
        sasl.display()
    )
}

fn chown(path: &Path, user: &str) {
    let user = nix::unistd::User::from_name(user).ok().flatten().unwrap_or_else(|| panic!("no user {user}"));
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).expect("chown");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
