//! The RabbitMQ queue. The catalog stays the source of truth: a job is a catalog row written
//! with its media (the outbox); the [relay](relay) hands unpublished rows to the broker with
//! publisher confirms; consumers ack a delivery only after the outcome is in the catalog.

mod broker;
mod consume;
mod dead_letters;
mod relay;

pub use broker::Broker;

use super::{DeadLetters, EventSink, JobQueue, QueueError, Result};
use crate::catalog::{Catalog, Job};
use crate::domain::{Kind, MediaId};
use async_trait::async_trait;
use consume::{Consume, Delivered, Forward};
use lapin::acker::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;
use tokio::sync::{mpsc, Mutex, Notify, OnceCell};

/// Without `max_jobs_in_flight_per_chat`: how many jobs of one chat and kind the relay lets
/// into the broker (or running) at once, so that another chat's job never has more than this
/// many of one chat's ahead of it in a queue.
pub const BROKER_WINDOW_PER_CHAT: u32 = 4;

pub struct AmqpQueue {
    broker: Arc<Broker>,
    catalog: Arc<dyn Catalog>,
    relay_wake: Arc<Notify>,
    /// Deliveries from the consumer task; started by the first `next`.
    deliveries: OnceCell<Mutex<mpsc::Receiver<Delivered>>>,
    prefetch: u16,
    /// The ackers of jobs handed out and not yet acked, by media.
    pending: SyncMutex<HashMap<MediaId, Acker>>,
}

impl AmqpQueue {
    /// Starts the outbox relay; consumers start with the first call to `next`.
    pub fn start(
        url: &str,
        config: &crate::Config,
        catalog: Arc<dyn Catalog>,
        prefetch: u16,
        metrics: Arc<crate::metrics::Metrics>,
        trust: &crate::tls::Trust,
    ) -> Self {
        let broker = Arc::new(Broker::new(
            url.to_owned(),
            trust.pem().map(str::to_owned),
            config.amqp_prefix.clone(),
            config.job_max_attempts,
            metrics,
        ));
        let relay_wake = Arc::new(Notify::new());
        broker.spawn(relay::Relay {
            broker: broker.clone(),
            catalog: catalog.clone(),
            wake: relay_wake.clone(),
            per_chat: config
                .limits
                .max_jobs_in_flight_per_chat
                .unwrap_or(BROKER_WINDOW_PER_CHAT),
        });
        Self {
            broker,
            catalog,
            relay_wake,
            deliveries: OnceCell::new(),
            prefetch,
            pending: SyncMutex::new(HashMap::new()),
        }
    }

    fn take_acker(&self, id: &MediaId) -> Option<Acker> {
        self.pending.lock().expect("not poisoned").remove(id)
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> QueueError {
    QueueError::Unavailable(e.into())
}

#[async_trait]
impl JobQueue for AmqpQueue {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn notify(&self) {
        self.relay_wake.notify_one();
    }

    async fn next(&self, kinds: &[Kind], lease: Duration) -> Result<Job> {
        let deliveries = self
            .deliveries
            .get_or_init(|| async {
                let queues = kinds.iter().map(|k| self.broker.jobs_queue(*k)).collect();
                let (tx, rx) = mpsc::channel(usize::from(self.prefetch));
                self.broker.spawn(Consume {
                    name: "job_consumer",
                    broker: self.broker.clone(),
                    queues,
                    prefetch: self.prefetch,
                    tag: "satchel-worker",
                    handler: Forward { tx },
                });
                Mutex::new(rx)
            })
            .await;
        loop {
            let Some(delivered) = deliveries.lock().await.recv().await else {
                return Err(unavailable(anyhow::anyhow!("the consumer stopped")));
            };
            let Some(id) = MediaId::parse(&delivered.message.media_id) else {
                tracing::error!(
                    media_id = delivered.message.media_id,
                    "dropping a malformed job message"
                );
                let _ = delivered.acker.ack(BasicAckOptions::default()).await;
                continue;
            };
            match self.catalog.begin_job(&id, lease).await {
                Ok(Some(job)) => {
                    self.pending
                        .lock()
                        .expect("not poisoned")
                        .insert(id, delivered.acker);
                    return Ok(job);
                }
                // Finished or erased already: a duplicate delivery.
                Ok(None) => {
                    let _ = delivered.acker.ack(BasicAckOptions::default()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a delivered job; handing it back");
                    let _ = delivered
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn ack(&self, job: &Job) -> Result<()> {
        // The job's row is gone or queued again: its chat may send the next.
        self.relay_wake.notify_one();
        match self.take_acker(&job.media_id) {
            Some(acker) => acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(unavailable),
            None => Ok(()),
        }
    }

    async fn retry(&self, job: &Job, after: Duration) -> Result<()> {
        // The catalog row goes back to the outbox; the relay publishes it once it is due.
        self.catalog
            .retry_job(&job.media_id, after)
            .await
            .map_err(unavailable)?;
        self.ack(job).await
    }

    fn counts_deliveries(&self) -> bool {
        true
    }

    async fn hand_back(&self, job: &Job) -> Result<()> {
        let Some(acker) = self.take_acker(&job.media_id) else {
            return Ok(());
        };
        // Requeued with its delivery count raised: past the limit, the broker dead-letters it.
        acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .map_err(unavailable)
    }

    async fn recover(&self) -> Result<u64> {
        // The broker redelivers what a dead consumer held; nothing to release here.
        Ok(0)
    }

    async fn depth(&self) -> Result<u64> {
        self.catalog.queue_depth().await.map_err(unavailable)
    }

    async fn check(&self) -> Result<()> {
        self.broker.check().await.map_err(unavailable)
    }

    fn watch_dead_letters(&self, sink: Arc<dyn DeadLetters>) {
        self.broker.spawn(Consume {
            name: "dead_letters",
            broker: self.broker.clone(),
            queues: vec![self.broker.dead_queue()],
            prefetch: 8,
            tag: "satchel-dead-letters",
            handler: dead_letters::GiveUp { sink },
        });
    }

    fn event_sink(&self) -> Option<Arc<dyn EventSink>> {
        Some(self.broker.clone())
    }

    async fn close(&self) {
        self.broker.close().await;
    }
}
