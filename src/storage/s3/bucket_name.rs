//! Per-chat bucket names: the operator's prefix and a keyed hash of the chat id and its
//! generation, valid in S3's rules for every chat id, and known only to whoever holds the key.
//!
//! Names are chosen once, when a chat (generation) is first recorded; the catalog keeps the
//! name, so changing the key, or the scheme, never moves a chat that already has a bucket.

use hmac::{Hmac, Mac};
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

/// `prefix` + base32 of HMAC-SHA256(`key`, chat id NUL generation), cut to 63 characters: a
/// valid bucket name for every chat id (ids may hold `.`, `_`, `:`, `@` and capitals, which
/// bucket names may not). NUL cannot occur in a chat id, so no two (chat, generation) pairs
/// hash alike. Without the key, nobody can tell a chat's bucket from its id, so nobody can
/// create it first in a shared namespace (AWS's is global). Distinct chats colliding would
/// take a 130-bit collision; the catalog's unique bucket column refuses one anyway.
pub(super) fn bucket_name(key: &[u8], prefix: &str, chat: &str, generation: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(chat.as_bytes());
    mac.update(b"\0");
    mac.update(generation.as_bytes());
    with_prefix(prefix, &mac.finalize().into_bytes())
}

/// The name of a chat recorded before chats had generations (and buckets a key): `prefix` +
/// base32 of the unkeyed SHA-256 of the chat id. Those chats keep it, as the catalog records.
pub(super) fn legacy_bucket_name(prefix: &str, chat: &str) -> String {
    with_prefix(prefix, &Sha256::digest(chat.as_bytes()))
}

fn with_prefix(prefix: &str, hash: &[u8]) -> String {
    let hash = crate::storage::base32_lower(hash);
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
                for name in [
                    bucket_name(KEY, prefix, id, "g1"),
                    bucket_name(KEY, prefix, id, "g2"),
                    legacy_bucket_name(prefix, id),
                ] {
                    assert!(valid_bucket(&name), "{name}");
                    assert!(seen.insert(name));
                }
            }
        }
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn the_name_depends_on_the_key_and_splits_chat_from_generation() {
        let name = bucket_name(KEY, "satchel-", "c1", "g1");
        assert_ne!(
            name,
            bucket_name(b"another key, also 32 bytes long!", "satchel-", "c1", "g1")
        );
        // Chat and generation are not simply concatenated.
        assert_ne!(
            bucket_name(KEY, "satchel-", "c1", "1g"),
            bucket_name(KEY, "satchel-", "c11", "g")
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
        mac.update(b"c1\0g1");
        let hash = crate::storage::base32_lower(&mac.finalize().into_bytes());
        assert_eq!(name, format!("satchel-{hash}"));
    }

    #[test]
    fn prefixes_that_cannot_make_valid_names_are_refused() {
        for bad in ["Satchel-", "-x", "a_b", "xn--a", &"p".repeat(38)] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
