//! Start-up and shutdown: pick each backend once from config, wire the state, serve.

use crate::catalog::{Catalog, PostgresCatalog, SqliteCatalog};
use crate::config::Config;
use crate::domain::Kind;
use crate::events::Events;
use crate::jobs::WorkerPool;
use crate::links::LinkSigner;
use crate::metrics::Metrics;
use crate::queue::amqp::Broker;
use crate::queue::{AmqpQueue, EmbeddedQueue, JobQueue};
use crate::state::AppState;
use crate::storage::{BlobStore, FsStore, PartPlan, S3Store};
use anyhow::{bail, Context};
use satchel_workers::Presets;
use secrecy::ExposeSecret;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The object store named by the config: S3 when an endpoint or key is set, else the
/// filesystem under the data directory.
async fn open_store(config: &Config, data_dir: &Path) -> anyhow::Result<Arc<dyn BlobStore>> {
    match &config.s3 {
        None => Ok(Arc::new(FsStore::open(data_dir)?)),
        Some(s3) => Ok(Arc::new(S3Store::new(s3, PartPlan::of(s3))?)),
    }
}

/// The catalog named by `database_url`: SQLite in the data directory by default.
async fn open_catalog(config: &Config, data_dir: &Path) -> anyhow::Result<Arc<dyn Catalog>> {
    match config.database_url.as_deref() {
        None => {
            let url = format!("sqlite://{}", data_dir.join("catalog.db").display());
            Ok(Arc::new(SqliteCatalog::open(&url).await?))
        }
        Some(url) if url.starts_with("sqlite:") => Ok(Arc::new(SqliteCatalog::open(url).await?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(
            Arc::new(PostgresCatalog::open(url, config.database_max_connections).await?),
        ),
        Some(_) => bail!("database_url must start with sqlite:, postgres:// or postgresql://"),
    }
}

/// The job queue: RabbitMQ when `amqp_url` is set, else the catalog-backed embedded queue.
/// A broker that is down does not stop start-up: accepted jobs wait in the outbox.
fn open_queue(
    config: &Config,
    catalog: Arc<dyn Catalog>,
    node: String,
) -> (Arc<dyn JobQueue>, Option<Arc<Broker>>) {
    match &config.amqp_url {
        None => (Arc::new(EmbeddedQueue::new(catalog, node)), None),
        Some(url) => {
            let broker = Arc::new(Broker::new(
                url.clone(),
                config.amqp_prefix.clone(),
                config.job_max_attempts,
            ));
            let prefetch = u16::try_from(config.workers).unwrap_or(u16::MAX);
            let queue = AmqpQueue::start(broker.clone(), catalog, prefetch);
            (Arc::new(queue), Some(broker))
        }
    }
}

/// What this process does: serve the API, run workers, or both.
#[derive(Debug, Clone)]
pub struct Role {
    pub api: bool,
    /// The kinds of jobs to run and how many at once; `None` for an API-only node.
    pub workers: Option<(Vec<Kind>, usize)>,
}

impl Role {
    /// Embedded: one process does everything. With a broker: API only, workers elsewhere.
    pub fn default_for(config: &Config) -> Self {
        Self {
            api: true,
            workers: match config.amqp_url {
                None => Some((Kind::ALL_PROCESSED.to_vec(), config.workers)),
                Some(_) => None,
            },
        }
    }
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    broker: Option<Arc<Broker>>,
    role: Role,
}

impl Application {
    /// Opens every backend and binds the listener; nothing is served until [`run`](Self::run).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let data_dir = config.data_dir.canonicalize()?;

        let store = open_store(&config, &data_dir).await?;
        let catalog = open_catalog(&config, &data_dir).await?;
        // Lasting across restarts with the data directory: the owner of this node's leases.
        let node = crate::secrets::load_or_create(&data_dir, "node-id")?.0;
        let (queue, broker) = open_queue(&config, catalog.clone(), node);

        let presets = match &config.presets {
            Some(path) => Presets::load(path).map_err(anyhow::Error::msg)?,
            None => Presets::default(),
        };
        let tokens: Vec<String> = match config.api_tokens.is_empty() {
            false => config
                .api_tokens
                .iter()
                .map(|t| t.expose_secret().to_owned())
                .collect(),
            true => {
                let (token, path, created) =
                    crate::secrets::load_or_create(&data_dir, "api-token")?;
                tracing::warn!(
                    path = %path.display(),
                    created,
                    "no API token configured: using the generated one kept in this file"
                );
                vec![token]
            }
        };
        let link_secret = match &config.link_secret {
            Some(s) => s.expose_secret().to_owned(),
            None => crate::secrets::load_or_create(&data_dir, "link-secret")?.0,
        };
        let webhook_secret = config
            .webhook_secret
            .clone()
            .unwrap_or_else(|| tokens[0].clone().into());

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let work_dir = data_dir.join("work");
        if work_dir.exists() {
            std::fs::remove_dir_all(&work_dir)?;
        }
        std::fs::create_dir_all(&work_dir)?;

        let mut events = Events::new(config.webhook_url.clone(), webhook_secret);
        if let Some(broker) = &broker {
            events = events.with_broker(broker.clone());
        }
        let role = Role::default_for(&config);
        let state = AppState {
            events,
            config: Arc::new(config),
            catalog,
            store,
            queue,
            signer: Arc::new(LinkSigner::new(link_secret.as_bytes())),
            token_hashes: Arc::new(tokens.iter().map(|t| crate::http::token_hash(t)).collect()),
            metrics: Arc::new(Metrics::default()),
            presets: Arc::new(presets),
            public_url: public_url.into(),
            work_dir,
        };
        Ok(Self {
            listener,
            state,
            broker,
            role,
        })
    }

    pub fn with_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests and
    /// jobs finish within the grace period, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            broker,
            role,
        } = self;
        let recovered = state.queue.recover().await?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "jobs left running at the last stop are queued again"
            );
        }
        let pool = role.workers.as_ref().map(|(kinds, concurrency)| {
            WorkerPool::spawn(state.clone(), kinds.clone(), *concurrency)
        });
        if let (Some(broker), Some(_)) = (&broker, &pool) {
            broker.spawn(crate::jobs::dead_letters::run(
                state.clone(),
                broker.clone(),
            ));
        }
        let stop = CancellationToken::new();
        let sweeper = tokio::spawn(crate::sweeper::run(state.clone(), stop.clone()));
        tracing::info!(
            addr = %listener.local_addr()?,
            api = role.api,
            workers = ?role.workers,
            queue = state.queue.name(),
            "satchel is serving"
        );

        let router = match role.api {
            true => crate::http::router(state.clone()),
            false => crate::http::ops_router(state.clone()),
        };
        let http_stop = stop.clone();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                http_stop.cancel();
            })
            .await?;
        tracing::info!("no longer accepting requests; finishing jobs");
        stop.cancel();
        if let Some(pool) = pool {
            pool.shutdown(state.config.shutdown_grace).await;
        }
        if let Some(broker) = &broker {
            broker.close().await;
        }
        let _ = sweeper.await;
        let requeued = state.queue.recover().await?;
        tracing::info!(requeued, "stopped");
        Ok(())
    }
}

/// What each satchel binary (`satchel`, `satchel-bench`) does first, before any other thread
/// exists: bound the heap, then log to stderr as `SATCHEL_LOG` says.
pub fn init_process() {
    bound_the_heap();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SATCHEL_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// glibc raises its mmap threshold each time a large block is freed, after which multi-MiB
/// buffers (S3 parts, decoded images) come from per-thread heaps that keep their freed pages.
/// A fixed threshold keeps every such buffer in its own mapping, returned when it is freed:
/// a 1 GiB upload to S3 peaked at 147 MiB RSS without this and 109 MiB with it.
fn bound_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
