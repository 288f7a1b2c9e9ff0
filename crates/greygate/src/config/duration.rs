//! Durations in the config file: `"5m"`, `"2d"`, `"36d"`, `"90s"`, or a
//! number of seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written for humans; printed back in the largest whole unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Human(pub Duration);

impl Human {
    pub const fn secs(s: u64) -> Human {
        Human(Duration::from_secs(s))
    }

    pub fn as_secs_i64(self) -> i64 {
        i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() != 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let s = d.as_secs();
        match s {
            0 => f.write_str("0s"),
            s if s % 86400 == 0 => write!(f, "{}d", s / 86400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for Human {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Human, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Human;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"5m\", \"2d\", \"90s\", or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Human, E> {
                humantime::parse_duration(v.trim())
                    .map(Human)
                    .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Human, E> {
                u64::try_from(v).map(Human::secs).map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Human, E> {
                Ok(Human::secs(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cases = [("5m", 300), ("2d", 172800), ("36 days", 3110400), ("90s", 90), ("1m 30s", 90)];
        for (input, secs) in cases {
            let h: Human =
                toml::from_str::<toml::Value>(&format!("v = {input:?}")).unwrap()["v"].clone().try_into().unwrap();
            assert_eq!(h.0.as_secs(), secs, "{input}");
        }
        assert_eq!(Human::secs(300).to_string(), "5m");
        assert_eq!(Human::secs(90).to_string(), "90s");
        assert_eq!(Human::secs(7200).to_string(), "2h");
        assert_eq!(Human::secs(3110400).to_string(), "36d");
    }
}
