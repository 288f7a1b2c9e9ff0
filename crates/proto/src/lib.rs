//! Sans-io codecs for the wire protocols greygate speaks.
//!
//! Every module here turns bytes into typed messages and typed answers back
//! into bytes. Nothing in this crate touches a socket, reads the clock or
//! spawns a task: the front ends in the `greygate` binary own all I/O and
//! feed the bytes they read into these decoders. That keeps each codec
//! deterministic, testable with exact byte transcripts, and fuzzable.
//!
//! - [`policy`]: the Postfix SMTP access policy delegation protocol
//!   (`check_policy_service`), request decoder and reply encoder.
//! - [`smtp`]: the SMTP proxy's server session, data phase, replies and
//!   upstream helpers.
//! - [`proxy_protocol`]: HAProxy's PROXY protocol header (v1 and v2).
//! - [`clamd`], [`spamd`]: the scanners' request framing and replies.
//! - [`qmail`]: qmail's greylisting datagrams (greydaemon's UDP format).
#![forbid(unsafe_code)]

pub mod clamd;
pub mod policy;
pub mod proxy_protocol;
pub mod qmail;
pub mod smtp;
pub mod spamd;
