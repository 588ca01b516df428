//! Identifiers parsed at the edge: once a handler holds a `ChatId`, it is valid.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")]
pub struct InvalidId {
    pub what: &'static str,
}

fn valid_opaque(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

macro_rules! opaque_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " chosen by the chat backend: 1-128 characters of `A-Z a-z 0-9 . _ : @ -`.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if valid_opaque(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidId { what: $what })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

opaque_id!(ChatId, "chat id");
opaque_id!(UserId, "user id");

/// A media id: a ULID, so ids are unguessable (80 random bits), URL-safe and time-ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(ulid::Ulid);

impl MediaId {
    pub fn generate() -> Self {
        Self(ulid::Ulid::new())
    }

    pub fn parse(s: &str) -> Option<Self> {
        // Only the canonical 26-character form: one media must have one spelling, because
        // links sign the string.
        let id = ulid::Ulid::from_string(s).ok()?;
        (id.to_string() == s).then_some(Self(id))
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for MediaId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(ChatId::parse("Ab0._:@-").is_ok());
        assert!(UserId::parse(&"u".repeat(128)).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", "a/b", "..\u{0}", "a b", "é", "a%2F"] {
            assert!(ChatId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(UserId::parse(&"u".repeat(129)).is_err());
    }

    #[test]
    fn media_ids_round_trip_in_canonical_form_only() {
        let id = MediaId::generate();
        assert_eq!(MediaId::parse(&id.to_string()), Some(id));
        assert_eq!(MediaId::parse(&id.to_string().to_lowercase()), None);
        assert_eq!(MediaId::parse("nope"), None);
    }
}
