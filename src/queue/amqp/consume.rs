//! A consumer session as a background task: opens a consuming connection, hands each delivery
//! to a [`Handler`], and when the connection fails, lets the driver back off and connect
//! again. The job consumer ([`Forward`]) and the dead-letter consumer
//! ([`super::dead_letters::GiveUp`]) differ only in their handler.

use super::broker::{hang_up, Broker, JobMessage};
use crate::background::{Step, Task};
use async_trait::async_trait;
use futures_util::stream::{select_all, StreamExt};
use lapin::acker::Acker;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::Consumer;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[async_trait]
pub trait Handler: Send + 'static {
    /// Takes one delivery; `false` ends consuming for good (nobody takes deliveries any more).
    async fn handle(&mut self, delivery: Delivery, stop: &CancellationToken) -> bool;
}

pub struct Consume<H> {
    pub name: &'static str,
    pub broker: Arc<Broker>,
    pub queues: Vec<String>,
    /// Unacked deliveries at most.
    pub prefetch: u16,
    pub tag: &'static str,
    pub handler: H,
}

/// Why a consuming connection is given up.
enum Ended {
    /// The consumers failed or were cancelled by the broker: connect again.
    Failed(String),
    /// The broker is closing, or nobody takes deliveries any more.
    Closing,
}

#[async_trait]
impl<H: Handler> Task for Consume<H> {
    fn name(&self) -> &'static str {
        self.name
    }

    /// One session: connect, consume until the connection fails (an error: the driver backs
    /// off, then the next step connects again) or the broker closes (done).
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<Step> {
        let (connection, consumers) = self
            .broker
            .consume(&self.queues, self.prefetch, self.tag)
            .await?;
        tracing::info!(queues = ?self.queues, "consuming");
        let ended = self.forward(consumers, stop).await;
        let reason = match &ended {
            Ended::Failed(_) => "reconnecting",
            Ended::Closing => "shutting down",
        };
        hang_up(connection, reason).await;
        match ended {
            Ended::Failed(why) => Err(anyhow::anyhow!(why)),
            Ended::Closing => Ok(Step::Done),
        }
    }
}

impl<H: Handler> Consume<H> {
    /// Cancellation point: between deliveries, never inside a handler.
    async fn forward(&mut self, consumers: Vec<Consumer>, stop: &CancellationToken) -> Ended {
        let mut deliveries = select_all(consumers);
        loop {
            let delivery = match stop.run_until_cancelled(deliveries.next()).await {
                None => return Ended::Closing,
                Some(None) => return Ended::Failed("the broker ended the consumers".into()),
                Some(Some(Err(e))) => return Ended::Failed(format!("consumer failed: {e}")),
                Some(Some(Ok(d))) => d,
            };
            if !self.handler.handle(delivery, stop).await {
                return Ended::Closing;
            }
        }
    }
}

/// A job delivery on its way to the worker pool.
pub struct Delivered {
    pub message: JobMessage,
    pub acker: Acker,
}

/// Hands job deliveries to the worker pool through a bounded channel.
pub struct Forward {
    pub tx: mpsc::Sender<Delivered>,
}

#[async_trait]
impl Handler for Forward {
    async fn handle(&mut self, delivery: Delivery, stop: &CancellationToken) -> bool {
        match serde_json::from_slice::<JobMessage>(&delivery.data) {
            Ok(message) => {
                let delivered = Delivered {
                    message,
                    acker: delivery.acker,
                };
                // The pool may have stopped taking jobs with the channel full.
                matches!(
                    stop.run_until_cancelled(self.tx.send(delivered)).await,
                    Some(Ok(()))
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "dropping an unreadable job message");
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                true
            }
        }
    }
}
