//! The webhook sink: each event POSTed to `webhook_url`, signed afresh for every attempt.

use super::delivery::{doubling, Transport};
use super::{sign, unix_now};
use crate::catalog::OutboxEvent;
use crate::domain::Sink;
use async_trait::async_trait;
use secrecy::SecretString;
use std::time::Duration;

/// Events POSTed at once: each is the oldest pending one of its media, so they may overlap.
const CONCURRENCY: u32 = 16;
/// A receiver that takes longer than this to answer has failed the attempt.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two attempts at one event.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct Webhook {
    url: String,
    secrets: Vec<SecretString>,
    max_age: Duration,
    client: reqwest::Client,
}

impl Webhook {
    /// `secrets` sign every attempt, each giving one `v1=` of the header; a failing event is
    /// retried for `max_age`, then marked dead. An `https://` receiver is verified against
    /// `trust` (the system's roots and `tls_ca_file`).
    pub fn new(
        url: String,
        secrets: Vec<SecretString>,
        max_age: Duration,
        trust: &crate::tls::Trust,
    ) -> anyhow::Result<Self> {
        let client = crate::tls::http_client(trust)?
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            url,
            secrets,
            max_age,
            client,
        })
    }

    async fn post(&self, event: &OutboxEvent) -> Result<(), String> {
        let signature = sign(&self.secrets, unix_now(), event.body.as_bytes());
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("satchel-signature", signature)
            .body(event.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the webhook answered {}", r.status())),
            Err(e) => Err(format!(
                "the webhook is unreachable: {}",
                crate::error::causes(&e.without_url())
            )),
        }
    }
}

#[async_trait]
impl Transport for Webhook {
    fn sink(&self) -> Sink {
        Sink::Webhook
    }

    fn batch(&self) -> u32 {
        CONCURRENCY
    }

    async fn deliver(&self, events: &[OutboxEvent]) -> Vec<Result<(), String>> {
        futures_util::future::join_all(events.iter().map(|e| self.post(e))).await
    }

    fn max_age(&self) -> Option<Duration> {
        Some(self.max_age)
    }

    fn backoff(&self, attempts: u32) -> Duration {
        doubling(attempts, MAX_BACKOFF)
    }
}
