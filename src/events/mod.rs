//! Delivering events from the outbox (API.md v1.1 "Events").
//!
//! The catalog writes each event ([`crate::domain::NewEvent`]) in the transaction of the
//! change it reports, one row per [`Sink`]. Here one [`delivery::Delivery`] loop per sink, on
//! every node, leases due rows, hands them to its [`delivery::Transport`] (the broker's
//! exchange, with confirms; or the webhook, signed afresh each attempt with [`sign`]) and
//! removes what was delivered. At-least-once: a node that dies holding a lease leaves its rows
//! to be delivered again once the lease runs out (or at once, by itself, when it restarts).

pub mod delivery;
pub mod exchange;
pub mod webhook;

use crate::domain::Sink;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `Satchel-Signature` value of `body` sent at `t` (unix seconds): `t=<t>`, then one
/// `v1=<hex HMAC-SHA256 of "<t>.<body>">` per secret, in order (several during a rotation, so
/// a receiver that knows any one of them accepts it). Receivers refuse a `t` more than 5
/// minutes from their clock, so each delivery attempt is signed with the time it is made.
pub fn sign(secrets: &[SecretString], t: u64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The sinks of this deployment: the broker's exchange when there is a broker, the webhook
/// when one is set. Every event gets an outbox row for each.
pub fn sinks(config: &crate::Config) -> Vec<Sink> {
    let mut sinks = Vec::new();
    if config.amqp_url.is_some() {
        sinks.push(Sink::Amqp);
    }
    if config.webhook_url.is_some() {
        sinks.push(Sink::Webhook);
    }
    sinks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_one_v1_per_secret_over_the_time_and_the_body() {
        let secrets: Vec<SecretString> = vec!["new".into(), "old".into()];
        let header = sign(&secrets, 1_700_000_000, b"{}");
        let expected = |key: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(b"1700000000.{}");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(
            header,
            format!(
                "t=1700000000,v1={},v1={}",
                expected(b"new"),
                expected(b"old")
            )
        );
        assert_ne!(sign(&secrets, 1_700_000_001, b"{}"), header);
    }
}
