//! The consumer task: keeps a consuming connection open (reconnecting with backoff) and hands
//! deliveries to the worker pool through a bounded channel.

use super::broker::{Broker, JobMessage};
use futures_util::stream::{select_all, StreamExt};
use lapin::acker::Acker;
use lapin::options::BasicAckOptions;
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
                let mut deliveries = select_all(consumers);
                loop {
                    let delivery = tokio::select! {
                        _ = broker.closed() => {
                            let _ = connection.close(200, "shutting down").await;
                            return;
                        }
                        delivery = deliveries.next() => delivery,
                    };
                    let Some(delivery) = delivery else { break };
                    let delivery = match delivery {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(error = %e, "consumer failed");
                            break;
                        }
                    };
                    match serde_json::from_slice::<JobMessage>(&delivery.data) {
                        Ok(message) => {
                            let delivered = Delivered {
                                message,
                                acker: delivery.acker,
                            };
                            // The pool may have stopped taking jobs with the channel full.
                            let sent = tokio::select! {
                                _ = broker.closed() => false,
                                sent = tx.send(delivered) => sent.is_ok(),
                            };
                            if !sent {
                                let _ = connection.close(200, "shutting down").await;
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "dropping an unreadable job message");
                            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                        }
                    }
                }
                let _ = connection.close(200, "reconnecting").await;
            }
            Err(e) => tracing::warn!(error = %e, ?backoff, "cannot consume; retrying"),
        }
        tokio::select! {
            _ = broker.closed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
