//! Media status events: `media.ready` / `media.failed`, POSTed to the configured webhook with
//! a `Satchel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` header made
//! afresh for every attempt ([`sign`]).

use crate::domain::{Media, Status};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ATTEMPTS: u32 = 5;

#[derive(Serialize)]
struct Event<'a> {
    event: String,
    #[serde(flatten)]
    media: &'a Media,
}

/// The JSON body of an event: the Media object plus `"event": "media.<status>"`.
pub fn event_body(media: &Media) -> Vec<u8> {
    serde_json::to_vec(&Event {
        event: format!("media.{}", media.status.as_str()),
        media,
    })
    .expect("a Media object serialises")
}

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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Clone)]
pub struct Events {
    webhook: Option<Arc<Webhook>>,
}

struct Webhook {
    url: String,
    secrets: Vec<SecretString>,
    client: reqwest::Client,
}

impl Events {
    /// `secrets` sign every delivery, each giving one `v1=` of the header; an `https://`
    /// receiver is verified against `trust`.
    pub fn new(
        webhook_url: Option<String>,
        secrets: Vec<SecretString>,
        trust: &crate::tls::Trust,
    ) -> anyhow::Result<Self> {
        let webhook = match webhook_url {
            None => None,
            Some(url) => Some(Arc::new(Webhook {
                url,
                secrets,
                client: crate::tls::http_client(trust)?
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()?,
            })),
        };
        Ok(Self { webhook })
    }

    /// Publishes the media's new status in the background; a webhook that fails is retried
    /// with backoff, then logged. Events are at-least-once: receivers dedupe on id + status.
    pub fn status_changed(&self, media: &Media) {
        if media.status == Status::Processing {
            return;
        }
        let Some(hook) = self.webhook.clone() else {
            return;
        };
        let body = event_body(media);
        let id = media.id;
        tokio::spawn(async move {
            for attempt in 1..=ATTEMPTS {
                let signature = sign(&hook.secrets, unix_now(), &body);
                let sent = hook
                    .client
                    .post(&hook.url)
                    .header("content-type", "application/json")
                    .header("satchel-signature", signature)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => {
                        tracing::warn!(media_id = %id, status = %r.status(), attempt, "webhook refused the event")
                    }
                    Err(e) => {
                        tracing::warn!(media_id = %id, error = %e, attempt, "webhook unreachable")
                    }
                }
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
            tracing::error!(media_id = %id, "webhook event dropped after {ATTEMPTS} attempts");
        });
    }
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
