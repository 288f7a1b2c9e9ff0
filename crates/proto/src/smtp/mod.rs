//! SMTP, as greygate's proxy speaks it on both legs.
//!
//! - [`server`]: the session toward the client (commands in, events out).
//! - [`data`]: the DATA phase, end-of-message detection and safe relaying.
//! - [`reply`]: replies, written and read (the upstream leg).
//! - [`ehlo`]: what we announce, and what the upstream announced.
//! - [`forward`]: XCLIENT/XFORWARD toward the upstream, with xtext.
//!
//! Command syntax is parsed with smtp-proto; framing, limits, order and
//! the proxy's own rules are here.

pub mod data;
pub mod ehlo;
pub mod forward;
pub mod reply;
pub mod server;
pub mod stuffing;

pub use data::BareNewline;
pub use ehlo::{Capabilities, Extensions};
pub use reply::{Reply, ReplyReader};
pub use server::{Event, Limits, MessageEnd, ServerSession};
pub use stuffing::{Stuffer, Unstuffer};
