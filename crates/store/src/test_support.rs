//! Helpers shared by the backends' own tests.

use crate::{DecideRequest, Timers, TripletKey};

/// A decision for `sender` on a fixed client network and recipient.
pub fn request(sender: &str, now: i64) -> DecideRequest {
    DecideRequest {
        triplet: TripletKey { client: "192.0.2.0/24".into(), sender: sender.into(), recipient: "r@y".into() },
        timers: Timers { delay: 300, retry_window: 86400, pass_lifetime: 86400 },
        auto_whitelist: None,
        now,
    }
}
