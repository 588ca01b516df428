//! The consumer task: keeps a consuming connection open (reconnecting with backoff) and hands
//! deliveries to the worker pool through a bounded channel.

use super::broker::{hang_up, Broker, JobMessage};
use futures_util::stream::{select_all, StreamExt};
use lapin::acker::Acker;
use lapin::options::BasicAckOptions;
use lapin::Consumer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Delivered {
    pub message: JobMessage,
    pub acker: Acker,
}

pub async fn run(
    broker: Arc<Broker>,
    queues: Vec<String>,
    prefetch: u16,
    tx: mpsc::Sender<Delivered>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match broker.consume(&queues, prefetch, "satchel-worker").await {
            Ok((connection, consumers)) => {
                backoff = Duration::from_millis(250);
                tracing::info!(?queues, "consuming jobs");
                let ended = forward(&broker, consumers, &tx).await;
                hang_up(connection, ended.reason()).await;
                if ended == Ended::Closing {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, ?backoff, "cannot consume; retrying"),
        }
        if broker
            .until_closed(tokio::time::sleep(backoff))
            .await
            .is_none()
        {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a consuming connection is given up.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The consumers failed or were cancelled by the broker: connect again.
    Failed,
    /// `Broker::close` was called, or nobody takes deliveries any more.
    Closing,
}

impl Ended {
    pub fn reason(&self) -> &'static str {
        match self {
            Ended::Failed => "reconnecting",
            Ended::Closing => "shutting down",
        }
    }
}

/// Hands deliveries to the pool until the consumers end or the broker closes.
async fn forward(broker: &Broker, consumers: Vec<Consumer>, tx: &mpsc::Sender<Delivered>) -> Ended {
    let mut deliveries = select_all(consumers);
    loop {
        let delivery = match broker.until_closed(deliveries.next()).await {
            None => return Ended::Closing,
            Some(None) => return Ended::Failed,
            Some(Some(Ok(d))) => d,
            Some(Some(Err(e))) => {
                tracing::warn!(error = %e, "consumer failed");
                return Ended::Failed;
            }
        };
        match serde_json::from_slice::<JobMessage>(&delivery.data) {
            Ok(message) => {
                let delivered = Delivered {
                    message,
                    acker: delivery.acker,
                };
                // The pool may have stopped taking jobs with the channel full.
                match broker.until_closed(tx.send(delivered)).await {
                    Some(Ok(())) => {}
                    _ => return Ended::Closing,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "dropping an unreadable job message");
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
        }
    }
}
