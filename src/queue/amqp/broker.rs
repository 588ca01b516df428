//! The RabbitMQ connection: topology, publisher confirms, reconnects.
//!
//! Broker objects, for prefix `p` (default `satchel`):
//! - `p.jobs.image`, `p.jobs.audio`, `p.jobs.video`: durable quorum queues with a delivery
//!   limit, dead-lettering through the fanout exchange `p.dlx` into `p.jobs.dead`;
//! - `p.events`: the topic exchange of media status events.

use crate::background::{Group, Task};
use crate::catalog::Job;
use crate::domain::Kind;
use crate::metrics::Metrics;
use anyhow::Context;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long a publish may wait for the broker's confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `close` waits for consumers to say goodbye to a broker that may be gone.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A job as it travels through the broker: just enough to find it in the catalog.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobMessage {
    pub media_id: String,
    pub kind: String,
}

pub struct Broker {
    url: String,
    /// `tls_ca_file`'s certificates: an `amqps://` broker is verified against the system roots
    /// plus these.
    ca_pem: Option<String>,
    prefix: String,
    delivery_limit: u32,
    /// The publishing link, opened on first use and again after a failure.
    link: Mutex<Option<(Connection, Channel)>>,
    /// The tasks that hold connections of their own (consumers, the relay): `close` stops
    /// them and waits for them; once it has, no new link is opened.
    tasks: Group,
}

/// Closes `connection` and, when the broker acknowledged that, waits (briefly) for lapin's I/O
/// thread to end: a thread still flushing when the runtime stops logs an I/O error.
pub async fn hang_up(connection: Connection, reason: &str) {
    if connection.close(200, reason).await.is_err() {
        return;
    }
    // A thread of its own rather than `spawn_blocking`: the runtime waits for blocking tasks
    // when it stops, and this one must never hold a process up.
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = connection.run();
        let _ = done.send(());
    });
    let _ = tokio::time::timeout(Duration::from_secs(2), ended).await;
}

impl Broker {
    pub fn new(
        url: String,
        ca_pem: Option<String>,
        prefix: String,
        delivery_limit: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            url,
            ca_pem,
            prefix,
            delivery_limit,
            link: Mutex::new(None),
            tasks: Group::new(metrics),
        }
    }

    pub fn jobs_queue(&self, kind: Kind) -> String {
        format!("{}.jobs.{}", self.prefix, kind.as_str())
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.jobs.dead", self.prefix)
    }

    fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    fn dead_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        let properties = ConnectionProperties::default()
            .with_connection_name("satchel".into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        // Only an `amqps://` URL uses the TLS configuration; lapin's rustls adds these roots to
        // the system's and checks the host name of the URL.
        let tls = lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: self.ca_pem.clone(),
        };
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect_with_config(&self.url, properties, tls),
        )
        .await
        .context("queue: connecting to RabbitMQ timed out")?
        .context("queue: cannot connect to RabbitMQ")?;
        Ok(connection)
    }

    /// Declares every exchange and queue; idempotent, so every (re)connect does it.
    async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                &self.events_exchange(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                &self.dead_exchange(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        let queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut quorum = FieldTable::default();
        quorum.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        channel
            .queue_declare(&self.dead_queue(), queue, quorum.clone())
            .await?;
        channel
            .queue_bind(
                &self.dead_queue(),
                &self.dead_exchange(),
                "",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut jobs = quorum;
        jobs.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongInt(self.delivery_limit as i32),
        );
        jobs.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(self.dead_exchange())),
        );
        for kind in [Kind::Image, Kind::Audio, Kind::Video] {
            channel
                .queue_declare(&self.jobs_queue(kind), queue, jobs.clone())
                .await?;
        }
        Ok(())
    }

    /// Tells every task on this broker to close its connection, and closes the publishing
    /// link: a stopping process says goodbye to the broker instead of leaving lapin's I/O
    /// loops to fail on a runtime that is going away. Call it once the worker pool has acked
    /// what it will: unacked deliveries go back to their queue.
    pub async fn close(&self) {
        self.tasks.token().cancel();
        if let Some((connection, _)) = self.link.lock().await.take() {
            hang_up(connection, "shutting down").await;
        }
        if self.tasks.shutdown(CLOSE_TIMEOUT).await > 0 {
            tracing::warn!("the broker's tasks did not close their connections in time");
        }
    }

    /// Drives a task that holds a connection of its own (a consumer, the relay) until `close`.
    pub fn spawn(&self, task: impl Task) {
        self.tasks.spawn(task);
    }

    /// The publishing channel (confirm mode), reconnecting if the last one died.
    async fn publisher(&self) -> anyhow::Result<Channel> {
        let mut link = self.link.lock().await;
        if self.tasks.is_stopping() {
            anyhow::bail!("the broker link is closed: satchel is stopping");
        }
        if let Some((connection, channel)) = link.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *link = None;
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.declare(&channel).await?;
        *link = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Publishes persistently and waits for the broker's confirm.
    async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) -> anyhow::Result<()> {
        let channel = self.publisher().await?;
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        let confirmed = tokio::time::timeout(CONFIRM_TIMEOUT, async {
            channel
                .basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions::default(),
                    body,
                    properties,
                )
                .await?
                .await
        })
        .await;
        match confirmed {
            Ok(Ok(confirmation)) if confirmation.is_ack() => Ok(()),
            Ok(Ok(_)) => anyhow::bail!("the broker refused the message"),
            Ok(Err(e)) => {
                self.forget().await;
                Err(e.into())
            }
            Err(_) => {
                self.forget().await;
                anyhow::bail!("no publisher confirm within {CONFIRM_TIMEOUT:?}")
            }
        }
    }

    async fn forget(&self) {
        *self.link.lock().await = None;
    }

    pub async fn publish_job(&self, job: &Job) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&JobMessage {
            media_id: job.media_id.to_string(),
            kind: job.kind.as_str().into(),
        })?;
        self.publish("", &self.jobs_queue(job.kind), &body).await
    }

    /// A new connection and channel consuming `queues`, at most `prefetch` unacked at once.
    /// Its own connection, so a consumer's failure never disturbs publishing.
    pub async fn consume(
        &self,
        queues: &[String],
        prefetch: u16,
        tag: &str,
    ) -> anyhow::Result<(Connection, Vec<Consumer>)> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        self.declare(&channel).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let mut consumers = Vec::new();
        for queue in queues {
            consumers.push(
                channel
                    // A consumer tag is unique per channel.
                    .basic_consume(
                        queue,
                        &format!("{tag}.{queue}"),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?,
            );
        }
        Ok((connection, consumers))
    }

    pub async fn check(&self) -> anyhow::Result<()> {
        self.publisher().await.map(|_| ())
    }
}

#[async_trait::async_trait]
impl crate::queue::EventSink for Broker {
    async fn declare(&self) -> anyhow::Result<()> {
        // The publishing link declares every broker object when it opens.
        self.publisher().await.map(|_| ())
    }

    /// Every publish goes out before the first confirm is awaited: one round trip for the
    /// batch, not one per event.
    async fn publish_events(
        &self,
        messages: &[crate::queue::EventMessage<'_>],
    ) -> Vec<anyhow::Result<()>> {
        let channel = match self.publisher().await {
            Ok(channel) => channel,
            Err(e) => {
                let e = format!("{e:#}");
                return messages
                    .iter()
                    .map(|_| Err(anyhow::anyhow!("{e}")))
                    .collect();
            }
        };
        let exchange = self.events_exchange();
        let mut confirms = Vec::with_capacity(messages.len());
        for m in messages {
            let mut headers = FieldTable::default();
            headers.insert(
                ShortString::from("satchel-signature"),
                AMQPValue::LongString(LongString::from(m.signature.as_str())),
            );
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(m.event_id.into())
                .with_type(m.event.into())
                .with_headers(headers);
            confirms.push(
                channel
                    .basic_publish(
                        &exchange,
                        &m.routing_key,
                        BasicPublishOptions::default(),
                        m.body,
                        properties,
                    )
                    .await,
            );
        }
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        let mut results = Vec::with_capacity(confirms.len());
        let mut broken = false;
        for confirm in confirms {
            let result = match confirm {
                Err(e) => Err(anyhow::Error::from(e)),
                Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(c)) if c.is_ack() => Ok(()),
                    Ok(Ok(_)) => Err(anyhow::anyhow!("the broker refused the message")),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(anyhow::anyhow!(
                        "no publisher confirm within {CONFIRM_TIMEOUT:?}"
                    )),
                },
            };
            broken |= result.is_err();
            results.push(result);
        }
        if broken {
            // A nack or a lost link: the next batch opens a fresh one.
            self.forget().await;
        }
        results
    }
}
