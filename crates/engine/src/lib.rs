//! greygate's decision engine, shared by every front end.
//!
//! A front end turns its protocol into [`Facts`] and asks
//! [`Engine::decide`]; it gets a [`Verdict`] (accept, defer or reject, with
//! headers and a reason) and encodes it in its own protocol.
//!
//! - [`address`]: sender and recipient normalisation.
//! - [`network`]: the client-network part of the key; CIDR sets.
//! - [`lists`]: trusted networks, whitelists, blacklists (postgrey formats).
//! - [`rules`]: per-client/sender/recipient overrides of the settings.
//! - [`check`]: the interface for checks (SPF, DNSBL, ...).
//! - [`checks`]: the sender checks themselves: SPF, DNS lists, reverse
//!   DNS, HELO; [`dns`]: the resolver trait they look things up with.
//! - [`template`]: configurable replies and headers.
//! - [`engine`]: the pipeline that puts them together.
//!
//! Nothing here reads the clock or touches a socket: `now` is an argument,
//! and the store and checks are traits.
#![forbid(unsafe_code)]

pub mod address;
pub mod check;
pub mod checks;
pub mod dns;
pub mod engine;
pub mod facts;
pub mod lists;
pub mod network;
pub mod rules;
pub mod template;
pub mod verdict;

pub use check::{Check, CheckResult, Effect};
pub use engine::{Engine, Explanation, Policy, Profile, Scoring, StaticEntry, Trace, is_verp_bounce};
pub use facts::{Facts, Stage};
pub use rules::{Overrides, RuleSpec, Rules, Settings};
pub use template::{Reply, ReplyClass, ReplyTemplate, Template};
pub use verdict::{Action, Reason, Verdict};
