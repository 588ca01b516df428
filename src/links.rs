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

/// What an upload ticket grants: one resumable upload into `chat` by `user` of at most
/// `max_bytes`, created before `expires`. Carried in the ticket itself, signed; the upload's
/// own row is keyed by `id`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ticket {
    /// 128 random bits, base32: the upload's id.
    pub id: String,
    pub chat: String,
    pub user: String,
    /// The membership it was issued under (`members.since`): a user who leaves and comes
    /// back cannot use it.
    pub membership: String,
    pub max_bytes: u64,
    /// The media's `ttl_seconds` (secret chats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_ttl_seconds: Option<u64>,
    /// Wins over the client's `Upload-Metadata` filename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Unix seconds.
    pub expires: i64,
}

/// Longer tickets are refused unread: a filename of 255 bytes and the longest ids fit well.
pub const MAX_TICKET_LEN: usize = 4096;

impl LinkSigner {
    fn ticket_mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes keys of any length");
        // Links' messages begin "satchel-link-": no ticket is ever a link's message.
        mac.update(b"satchel-ticket-v1\n");
        mac.update(payload);
        mac
    }

    /// `<base64url(JSON)>.<base64url(HMAC)>`: opaque to the client, checked by every node.
    pub fn ticket(&self, ticket: &Ticket) -> String {
        let payload = serde_json::to_vec(ticket).expect("a ticket serialises");
        let mac = self.ticket_mac(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The ticket, if this service signed exactly it (compared in constant time). Expiry is
    /// the caller's to check: a created upload outlives its ticket.
    pub fn open_ticket(&self, ticket: &str) -> Option<Ticket> {
        if ticket.len() > MAX_TICKET_LEN {
            return None;
        }
        let (payload, mac) = ticket.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        self.ticket_mac(&payload).verify_slice(&mac).ok()?;
        serde_json::from_slice(&payload).ok()
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

    #[test]
    fn a_ticket_opens_only_as_signed() {
        let signer = LinkSigner::new(b"k");
        let ticket = Ticket {
            id: "abc".into(),
            chat: "c1".into(),
            user: "u1".into(),
            membership: "m1".into(),
            max_bytes: 10,
            media_ttl_seconds: None,
            filename: Some("a.jpg".into()),
            expires: 1_900_000_000,
        };
        let signed = signer.ticket(&ticket);
        assert_eq!(signer.open_ticket(&signed), Some(ticket.clone()));
        assert_eq!(LinkSigner::new(b"other").open_ticket(&signed), None);
        let (payload, mac) = signed.split_once('.').unwrap();
        let mut larger = ticket;
        larger.max_bytes = 1 << 40;
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&larger).unwrap());
        assert_eq!(signer.open_ticket(&format!("{forged}.{mac}")), None);
        assert_eq!(signer.open_ticket(payload), None);
        assert_eq!(signer.open_ticket(&"a".repeat(5000)), None);
    }
}
