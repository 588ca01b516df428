//! Download links signed by this service: HMAC-SHA256 over media, variant, user and expiry.
//! The signature proves the link was issued; membership is checked again at every download.

use crate::domain::{MediaId, UserId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

pub struct LinkSigner {
    key: SecretSlice<u8>,
}

/// What a link grants, as carried in its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub media: MediaId,
    pub variant: String,
    pub user: UserId,
    /// The membership the link was issued under: the link ends with it for good.
    pub membership: String,
    /// Unix seconds.
    pub expires: i64,
}

impl LinkSigner {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: key.to_vec().into(),
        }
    }

    fn mac(&self, grant: &Grant) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes keys of any length");
        // Newline-separated: none of the fields can contain one, so no two grants collide.
        mac.update(
            format!(
                "satchel-link-v2\n{}\n{}\n{}\n{}\n{}",
                grant.media, grant.variant, grant.user, grant.membership, grant.expires
            )
            .as_bytes(),
        );
        mac
    }

    pub fn sign(&self, grant: &Grant) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(grant).finalize().into_bytes())
    }

    /// Whether `signature` was made by [`sign`](Self::sign) for exactly this grant
    /// (compared in constant time). Expiry is the caller's to check.
    pub fn verify(&self, grant: &Grant, signature: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(signature) {
            Ok(bytes) => self.mac(grant).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            media: MediaId::generate(),
            variant: "thumbnail".into(),
            user: UserId::parse("u1").unwrap(),
            membership: "m1".into(),
            expires: 1_900_000_000,
        }
    }

    #[test]
    fn a_signature_verifies_only_its_own_grant() {
        let signer = LinkSigner::new(b"k");
        let g = grant();
        let sig = signer.sign(&g);
        assert!(signer.verify(&g, &sig));
        let mut other = g.clone();
        other.user = UserId::parse("u2").unwrap();
        assert!(!signer.verify(&other, &sig));
        let mut rejoined = g.clone();
        rejoined.membership = "m2".into();
        assert!(!signer.verify(&rejoined, &sig));
        let mut later = g.clone();
        later.expires += 1;
        assert!(!signer.verify(&later, &sig));
        assert!(!LinkSigner::new(b"other").verify(&g, &sig));
        assert!(!signer.verify(&g, "not base64!"));
    }
}
