//! The broker sink: events published to `<prefix>.events` with routing key
//! `<event>.<chat_id>`, persistent, signed like a webhook in the `satchel-signature` header,
//! each removed from the outbox only once confirmed.

use super::delivery::{doubling, Transport};
use crate::catalog::OutboxEvent;
use crate::domain::event::routing_key;
use crate::domain::Sink;
use crate::queue::{EventMessage, EventSink};
use async_trait::async_trait;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

/// Events published per batch before their confirms are awaited.
const BATCH: u32 = 200;
/// The longest pause between two attempts while the broker is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Exchange {
    pub sink: Arc<dyn EventSink>,
    /// Sign each message as a webhook is signed (`satchel-signature` header).
    pub secrets: Vec<SecretString>,
}

#[async_trait]
impl Transport for Exchange {
    fn sink(&self) -> Sink {
        Sink::Amqp
    }

    fn batch(&self) -> u32 {
        BATCH
    }

    async fn deliver(&self, events: &[OutboxEvent]) -> Vec<Result<(), String>> {
        let t = super::unix_now();
        let messages: Vec<EventMessage> = events
            .iter()
            .map(|e| EventMessage {
                routing_key: routing_key(&e.event, &e.chat_id),
                event_id: &e.event_id,
                event: &e.event,
                signature: super::sign(&self.secrets, t, e.body.as_bytes()),
                body: e.body.as_bytes(),
            })
            .collect();
        self.sink
            .publish_events(&messages)
            .await
            .into_iter()
            .map(|r| r.map_err(|e| format!("{e:#}")))
            .collect()
    }

    fn max_age(&self) -> Option<Duration> {
        None
    }

    fn backoff(&self, attempts: u32) -> Duration {
        doubling(attempts, MAX_BACKOFF)
    }
}
