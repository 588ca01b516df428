//! Start-up and shutdown: pick each backend once from config, wire the state, serve.

use crate::catalog::{Catalog, SqliteCatalog};
use crate::config::Config;
use crate::events::Events;
use crate::jobs::WorkerPool;
use crate::links::LinkSigner;
use crate::metrics::Metrics;
use crate::queue::{EmbeddedQueue, JobQueue};
use crate::state::AppState;
use crate::storage::{BlobStore, FsStore};
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
        Some(_) => bail!("the S3 store is not available in this build yet"),
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
        Some(_) => bail!("only sqlite:// catalogs are available in this build yet"),
    }
}

/// The job queue: RabbitMQ when `amqp_url` is set, else the catalog-backed embedded queue.
async fn open_queue(config: &Config, catalog: Arc<dyn Catalog>) -> anyhow::Result<Arc<dyn JobQueue>> {
    match &config.amqp_url {
        None => Ok(Arc::new(EmbeddedQueue::new(catalog))),
        Some(_) => bail!("the RabbitMQ queue is not available in this build yet"),
    }
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Opens every backend and binds the listener; nothing is served until [`run`](Self::run).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let data_dir = config.data_dir.canonicalize()?;

        let store = open_store(&config, &data_dir).await?;
        let catalog = open_catalog(&config, &data_dir).await?;
        let queue = open_queue(&config, catalog.clone()).await?;

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

        let state = AppState {
            events: Events::new(config.webhook_url.clone(), webhook_secret),
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
        Ok(Self { listener, state })
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
        let Self { listener, state } = self;
        // A single embedded process owns every lease: whatever was running when it last
        // stopped runs again now.
        let released = state.catalog.release_all_leases().await?;
        if released > 0 {
            tracing::info!(
                released,
                "jobs left running at the last stop are queued again"
            );
        }
        let pool = WorkerPool::spawn(
            state.clone(),
            vec![
                crate::domain::Kind::Image,
                crate::domain::Kind::Audio,
                crate::domain::Kind::Video,
            ],
            state.config.workers,
        );
        let stop = CancellationToken::new();
        let sweeper = tokio::spawn(crate::sweeper::run(state.clone(), stop.clone()));
        tracing::info!(addr = %listener.local_addr()?, workers = state.config.workers, "satchel is serving");

        let http_stop = stop.clone();
        axum::serve(listener, crate::http::router(state.clone()))
            .with_graceful_shutdown(async move {
                shutdown.await;
                http_stop.cancel();
            })
            .await?;
        tracing::info!("no longer accepting requests; finishing jobs");
        stop.cancel();
        pool.shutdown(state.config.shutdown_grace).await;
        let _ = sweeper.await;
        let released = state.catalog.release_all_leases().await?;
        tracing::info!(requeued = released, "stopped");
        Ok(())
    }
}
