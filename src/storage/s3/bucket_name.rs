//! Per-chat bucket names: the operator's prefix and a hash of the chat id, valid in S3's
//! rules for every chat id.

use sha2::{Digest, Sha256};

/// Chat buckets keep at least this many base32 characters of the chat id's hash (130 bits),
/// which bounds the prefix length.
const MIN_HASH_CHARS: usize = 26;
const MAX_BUCKET_NAME: usize = 63;

/// The prefix is the operator's; it must leave a valid bucket name whatever follows it.
pub(super) fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    let valid_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let valid_start = prefix
        .bytes()
        .next()
        .is_none_or(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    anyhow::ensure!(
        valid_chars && valid_start,
        "s3_bucket_prefix must be lowercase letters, digits and hyphens, starting with a letter or digit"
    );
    anyhow::ensure!(
        prefix.len() + MIN_HASH_CHARS <= MAX_BUCKET_NAME,
        "s3_bucket_prefix must be at most {} characters",
        MAX_BUCKET_NAME - MIN_HASH_CHARS
    );
    anyhow::ensure!(
        !prefix.starts_with("xn--") && !prefix.starts_with("sthree-"),
        "s3_bucket_prefix must not start with a reserved S3 prefix"
    );
    Ok(())
}

/// `prefix` + base32 of SHA-256(chat id), cut to 63 characters: a valid bucket name for every
/// chat id (ids may hold `.`, `_`, `:`, `@` and capitals, which bucket names may not). Distinct
/// chats colliding would take a 130-bit hash collision; the catalog's unique bucket column
/// refuses one anyway.
pub(super) fn bucket_name(prefix: &str, chat: &str) -> String {
    let hash = crate::storage::base32_lower(&Sha256::digest(chat.as_bytes()));
    let room = MAX_BUCKET_NAME - prefix.len();
    format!("{prefix}{}", &hash[..room.min(hash.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn valid_bucket(name: &str) -> bool {
        (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
    }

    #[test]
    fn every_chat_id_gets_a_valid_distinct_bucket() {
        let longest = "Z".repeat(128);
        let ids = [
            "c1",
            "C1",
            "a.b",
            "a_b",
            "a:b",
            "a@b",
            "-",
            longest.as_str(),
        ];
        let mut seen = HashSet::new();
        for prefix in ["", "satchel-", "t1234abcd-", &"p".repeat(37)] {
            check_prefix(prefix).unwrap();
            for id in ids {
                let name = bucket_name(prefix, id);
                assert!(valid_bucket(&name), "{name}");
                assert!(seen.insert(name));
            }
        }
    }

    #[test]
    fn prefixes_that_cannot_make_valid_names_are_refused() {
        for bad in ["Satchel-", "-x", "a_b", "xn--a", &"p".repeat(38)] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
