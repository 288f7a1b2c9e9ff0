//! The encoding of one `log` row: every change one transaction made.
//!
//! A decision used to be one 10-column INSERT; now a transaction writes a
//! single row, whatever the number of decisions in it, and the changes are
//! a compact binary blob: a format byte, then the postcard encoding of
//! [`Batch`]. Each key appears at most once per row (a transaction logs a
//! key's final state). A record without times is a deletion.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The first byte of every row; a new encoding gets a new number.
const FORMAT: u8 = 1;

/// A triplet's fields other than its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Times {
    pub first_seen: i64,
    pub last_seen: i64,
    pub passed_at: Option<i64>,
    pub attempts: u32,
    pub passes: u32,
    pub expires_at: i64,
}

/// A client record's fields other than its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ClientTimes {
    pub passes: u32,
    pub last_counted: i64,
    pub last_seen: i64,
    pub expires_at: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct TripletChange<'a> {
    #[serde(borrow)]
    pub client: Cow<'a, str>,
    #[serde(borrow)]
    pub sender: Cow<'a, str>,
    #[serde(borrow)]
    pub recipient: Cow<'a, str>,
    /// `None`: the triplet was deleted.
    pub times: Option<Times>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ClientChange<'a> {
    #[serde(borrow)]
    pub client: Cow<'a, str>,
    /// `None`: the record was deleted.
    pub times: Option<ClientTimes>,
}

/// Everything one transaction changed.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Batch<'a> {
    #[serde(borrow)]
    pub triplets: Vec<TripletChange<'a>>,
    #[serde(borrow)]
    pub clients: Vec<ClientChange<'a>>,
}

impl Batch<'_> {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![FORMAT]).expect("encoding to a Vec cannot fail")
    }
}

/// Decode a row; an unknown format or a damaged blob is an error (the
/// file was written by a newer greygate, or damaged).
pub(super) fn decode(data: &[u8]) -> rusqlite::Result<Batch<'_>> {
    let bad = |why: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, why.into());
    match data.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| bad(format!("log row: {e}"))),
        Some((other, _)) => Err(bad(format!("log row format {other} is unknown to this greygate"))),
        None => Err(bad("empty log row".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_bad_rows_are_refused() {
        let batch = Batch {
            triplets: vec![
                TripletChange {
                    client: "192.0.2.0/24".into(),
                    sender: "a@x".into(),
                    recipient: "b@y".into(),
                    times: Some(Times {
                        first_seen: 1,
                        last_seen: 2,
                        passed_at: None,
                        attempts: 3,
                        passes: 0,
                        expires_at: 9,
                    }),
                },
                TripletChange {
                    client: "2001:db8::/64".into(),
                    sender: "<>".into(),
                    recipient: "c@z".into(),
                    times: None,
                },
            ],
            clients: vec![ClientChange { client: "192.0.2.10".into(), times: None }],
        };
        let bytes = batch.encode();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode(&bytes).unwrap(), batch);
        assert!(decode(&[]).is_err());
        assert!(decode(&[FORMAT + 1, 0]).is_err());
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
