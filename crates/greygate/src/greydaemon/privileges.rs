//! greydaemon's `-u`: switch to an unprivileged user after binding.
//!
//! Called once the sockets are bound and before the store is opened, so
//! every file greygate creates afterwards belongs to that user (as
//! greydaemon's save file does). setgid before setuid, supplementary
//! groups cleared, and a check that root cannot be regained.

use anyhow::{Context, Result, bail};
use nix::unistd::{Uid, User, setgid, setgroups, setuid};

pub fn drop_to(name: &str) -> Result<()> {
    let user = User::from_name(name)
        .with_context(|| format!("cannot look up user {name:?}"))?
        .with_context(|| format!("no such user {name:?}"))?;
    setgroups(&[user.gid])
        .with_context(|| format!("cannot set the groups of {name:?} (is greygate running as root?)"))?;
    setgid(user.gid).with_context(|| format!("cannot switch to group {}", user.gid))?;
    setuid(user.uid).with_context(|| format!("cannot switch to user {name:?}"))?;
    if !user.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
        bail!("switched to {name:?} but could become root again");
    }
    tracing::info!(user = name, uid = user.uid.as_raw(), gid = user.gid.as_raw(), "now running as user");
    Ok(())
}
