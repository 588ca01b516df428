//! Jobs the broker gave up on (their consumer died `delivery_limit` times, e.g. a decoder that
//! crashes the process) arrive in `<prefix>.jobs.dead`; each is handed to the service's
//! [`DeadLetters`], which marks the media failed.

use super::consume::Handler;
use crate::domain::MediaId;
use crate::queue::DeadLetters;
use async_trait::async_trait;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct GiveUp {
    pub sink: Arc<dyn DeadLetters>,
}

#[async_trait]
impl Handler for GiveUp {
    async fn handle(&mut self, delivery: Delivery, _stop: &CancellationToken) -> bool {
        let id = serde_json::from_slice::<serde_json::Value>(&delivery.data)
            .ok()
            .and_then(|v| v["media_id"].as_str().and_then(MediaId::parse));
        if let Some(id) = id {
            self.sink.given_up(&id).await;
        }
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        true
    }
}
