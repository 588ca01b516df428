//! Media status events: `media.ready` / `media.failed`, POSTed to the configured webhook with
//! a `Satchel-Signature: sha256=<hex HMAC of the body>` header.

use crate::domain::{Media, Status};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

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

#[derive(Clone)]
pub struct Events {
    webhook: Option<Arc<Webhook>>,
}

struct Webhook {
    url: String,
    secret: SecretString,
    client: reqwest::Client,
}

impl Events {
    pub fn new(webhook_url: Option<String>, secret: SecretString) -> Self {
        let webhook = webhook_url.map(|url| {
            Arc::new(Webhook {
                url,
                secret,
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("a plain reqwest client builds"),
            })
        });
        Self { webhook }
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
            let signature = format!(
                "sha256={}",
                crate::links::hex_hmac(hook.secret.expose_secret().as_bytes(), &body)
            );
            for attempt in 1..=ATTEMPTS {
                let sent = hook
                    .client
                    .post(&hook.url)
                    .header("content-type", "application/json")
                    .header("satchel-signature", &signature)
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
