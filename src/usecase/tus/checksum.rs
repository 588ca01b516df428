//! A chunk's `Upload-Checksum` (the tus checksum extension): SHA-1 or SHA-256 of its bytes.

use sha1::Digest as _;

/// A chunk's `Upload-Checksum`.
#[derive(Debug, Clone)]
pub enum Checksum {
    Sha1(Vec<u8>),
    Sha256(Vec<u8>),
}

pub(super) enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Checksum {
    pub(super) fn hasher(&self) -> Hasher {
        match self {
            Checksum::Sha1(_) => Hasher::Sha1(sha1::Sha1::new()),
            Checksum::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub(super) fn matches(&self, hasher: Hasher) -> bool {
        match (self, hasher) {
            (Checksum::Sha1(want), Hasher::Sha1(h)) => h.finalize().as_slice() == want.as_slice(),
            (Checksum::Sha256(want), Hasher::Sha256(h)) => {
                h.finalize().as_slice() == want.as_slice()
            }
            _ => false,
        }
    }
}

impl Hasher {
    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }
}
