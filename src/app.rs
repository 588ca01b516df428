//! Start-up and shutdown: pick each backend once from config, wire the state, serve.

use crate::background::Group;
use crate::catalog::{Catalog, SqlCatalog};
use crate::config::Config;
use crate::domain::Kind;
use crate::events::delivery::{Delivery, Transport};
use crate::http::conn::{serve, Plain, Slots};
use crate::jobs::WorkerPool;
use crate::links::LinkSigner;
use crate::metrics::Metrics;
use crate::queue::{AmqpQueue, EmbeddedQueue, JobQueue};
use crate::state::AppState;
use crate::storage::{BlobStore, FsStore, PartPlan, S3Store};
use crate::sweeper::Sweeper;
use crate::tls::server::{Certificates, TlsListener};
use crate::tls::Trust;
use anyhow::Context;
use satchel_workers::Presets;
use secrecy::ExposeSecret;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The object store named by the config: S3 when an endpoint or key is set, else the
/// filesystem under the data directory.
async fn open_store(
    config: &Config,
    data_dir: &Path,
    trust: &Trust,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    match &config.s3 {
        None => Ok(Arc::new(FsStore::open(data_dir)?)),
        Some(s3) => {
            let key = match &s3.bucket_key {
                Some(key) => key.expose_secret().to_owned(),
                None => crate::secrets::generated(
                    data_dir,
                    "s3-bucket-key",
                    Some(
                        "no s3_bucket_key configured: new chat buckets are named with the \
                         generated key kept in this file; a cluster must set s3_bucket_key, the \
                         same on every node",
                    ),
                )?,
            };
            Ok(Arc::new(S3Store::new(
                s3,
                PartPlan::of(s3),
                key.as_bytes(),
                trust,
            )?))
        }
    }
}

/// The catalog named by `database_url`: SQLite in the data directory by default. A
/// PostgreSQL URL's `sslmode` and `sslrootcert` mean what they mean to libpq
/// ([`crate::tls::postgres`]). It keeps every event for each sink of the deployment.
async fn open_catalog(
    config: &Config,
    data_dir: &Path,
    trust: &Trust,
) -> anyhow::Result<Arc<dyn Catalog>> {
    let url = match config.database_url.as_deref() {
        Some(url) if url.starts_with("postgres") => {
            crate::tls::postgres::catalog_url(url, trust, data_dir)?
        }
        Some(url) => url.to_owned(),
        None => {
            // Created 0600 before SQLite opens it; its WAL and shared-memory files take the
            // database file's mode.
            let path = data_dir.join("catalog.db");
            create_private(&path)?;
            format!("sqlite://{}", path.display())
        }
    };
    let catalog = SqlCatalog::open(
        &url,
        config.database_max_connections,
        crate::events::sinks(config),
    )
    .await
    .context("cannot open the catalog (database_url)")?;
    Ok(Arc::new(catalog))
}

fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

/// Creates `path` empty with mode 0600 if it does not exist; an existing one is made 0600.
fn create_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    restrict(path, 0o600)
}

/// The job queue: RabbitMQ when `amqp_url` is set, else the catalog-backed embedded queue.
/// A broker that is down does not stop start-up: accepted jobs wait in the outbox.
fn open_queue(
    config: &Config,
    catalog: Arc<dyn Catalog>,
    node: String,
    metrics: Arc<Metrics>,
    trust: &Trust,
) -> Arc<dyn JobQueue> {
    match &config.amqp_url {
        None => Arc::new(EmbeddedQueue::new(
            catalog,
            node,
            config.limits.max_jobs_in_flight_per_chat,
        )),
        Some(url) => {
            let prefetch = u16::try_from(config.workers).unwrap_or(u16::MAX);
            let queue = AmqpQueue::start(url, config, catalog, prefetch, metrics, trust);
            Arc::new(queue)
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

impl Role {
    /// `image,audio,video x2`, or `none` for an API-only node: for the start-up line.
    fn workers_label(&self) -> String {
        match &self.workers {
            None => "none".into(),
            Some((kinds, n)) => {
                let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                format!("{} x{n}", kinds.join(","))
            }
        }
    }
}

pub struct Application {
    listener: TcpListener,
    /// With `tls_cert_file` and `tls_key_file`: HTTPS with these, re-read on SIGHUP.
    https: Option<Arc<Certificates>>,
    state: AppState,
    role: Role,
    /// This node's lasting identity (the owner of its leases).
    node: String,
    /// One per sink: the event delivery loops.
    transports: Vec<Arc<dyn Transport>>,
}

impl Application {
    /// Opens every backend and binds the listener; nothing is served until [`run`](Self::run).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let data_dir = config.data_dir.canonicalize()?;
        // It holds the secrets, the catalog and (embedded) every chat's media.
        restrict(&data_dir, 0o700)?;
        crate::tls::install_provider();
        let trust = Trust::load(config.tls_ca_file.as_deref())?;
        let https = match &config.tls {
            Some(tls) => Some(Certificates::load(&tls.cert_file, &tls.key_file)?),
            None => None,
        };

        let store = open_store(&config, &data_dir, &trust).await?;
        let catalog = open_catalog(&config, &data_dir, &trust).await?;
        // Lasting across restarts with the data directory: the owner of this node's leases.
        let node = crate::secrets::load_or_create(&data_dir, "node-id")?.0;
        let metrics = Arc::new(Metrics::default());
        let queue = open_queue(
            &config,
            catalog.clone(),
            node.clone(),
            metrics.clone(),
            &trust,
        );

        // Jobs read the presets in their transform child; a bad file is refused here, at start.
        let presets = match &config.presets {
            Some(path) => Presets::load(path).map_err(anyhow::Error::msg)?,
            None => Presets::default(),
        };
        let budgets = crate::jobs::budgets::Budgets::new(config.job_timeout, &presets);
        let tokens: Vec<String> = match config.api_tokens.is_empty() {
            false => config
                .api_tokens
                .iter()
                .map(|t| t.expose_secret().to_owned())
                .collect(),
            true => vec![crate::secrets::generated(
                &data_dir,
                "api-token",
                Some("no API token configured: using the generated one kept in this file"),
            )?],
        };
        let link_secret = match &config.link_secret {
            Some(s) => s.expose_secret().to_owned(),
            None => crate::secrets::generated(&data_dir, "link-secret", None)?,
        };
        // Never an API token: whoever receives webhooks must not hold API access.
        let webhook_secrets = match config.webhook_secrets.is_empty() {
            false => config.webhook_secrets.clone(),
            true => {
                let signs = config.webhook_url.is_some() || config.amqp_url.is_some();
                let warning = signs.then_some(
                    "no webhook_secret configured: events are signed with the generated \
                     secret kept in this file (their receivers check with it); a cluster must \
                     set webhook_secret, the same on every node",
                );
                vec![crate::secrets::generated(&data_dir, "webhook-secret", warning)?.into()]
            }
        };

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        let scheme = match https {
            Some(_) => "https",
            None => "http",
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}"));
        let work_dir = data_dir.join("work");
        clear_scratch(&work_dir)?;

        let mut transports: Vec<Arc<dyn Transport>> = Vec::new();
        if let Some(sink) = queue.event_sink() {
            // Before anything is served, so consumers can bind to the exchange before the
            // first event; a broker that is down now gets it declared when the link opens.
            if let Err(e) = sink.declare().await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot declare the event exchange yet"
                );
            }
            transports.push(Arc::new(crate::events::exchange::Exchange {
                sink,
                secrets: webhook_secrets.clone(),
            }));
        }
        if let Some(url) = &config.webhook_url {
            transports.push(Arc::new(crate::events::webhook::Webhook::new(
                url.clone(),
                webhook_secrets,
                config.webhook_max_age,
                &trust,
            )?));
        }
        let limits = &config.limits;
        let rate_limits = crate::limits::Limits::new(
            limits.rates.clone(),
            limits
                .redis_url
                .as_deref()
                .map(|url| (url, limits.redis_prefix.as_str())),
            limits.on_error,
            metrics.clone(),
        )?;
        let in_flight = crate::limits::InFlight::new(
            limits.max_uploads_in_flight_per_user,
            limits.max_uploads_in_flight,
        );
        let role = Role::default_for(&config);
        let transforms = crate::jobs::isolate::Isolation::new(
            match &config.worker_exe {
                Some(exe) => exe.clone(),
                None => crate::cli::transform_binary()?,
            },
            config.presets.clone(),
            config.job_memory_limit,
            work_dir.clone(),
        )?;
        let state = AppState {
            transforms: Arc::new(transforms),
            limits: Arc::new(rate_limits),
            in_flight: Arc::new(in_flight),
            budgets,
            readiness: Default::default(),
            config: Arc::new(config),
            catalog,
            store,
            queue,
            signer: Arc::new(LinkSigner::new(link_secret.as_bytes())),
            token_hashes: Arc::new(tokens.iter().map(|t| crate::http::token_hash(t)).collect()),
            metrics,
            public_url: public_url.into(),
            node: node.as_str().into(),
            work_dir,
        };
        Ok(Self {
            listener,
            https,
            state,
            role,
            node,
            transports,
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
            https,
            state,
            role,
            node,
            transports,
        } = self;
        let recovered = state.queue.recover().await?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "jobs left running at the last stop are queued again"
            );
        }
        let released = state.catalog.release_tus_leases(&node).await?;
        if released > 0 {
            tracing::info!(
                released,
                "resumable uploads held at the last stop can take their next request"
            );
        }
        let released = state.catalog.release_event_leases(&node).await?;
        if released > 0 {
            tracing::info!(
                released,
                "events left undelivered at the last stop are due again"
            );
        }
        if role.workers.is_some() {
            state.transforms.check()?;
        }
        let pool = role.workers.as_ref().map(|(kinds, concurrency)| {
            WorkerPool::spawn(state.clone(), kinds.clone(), *concurrency)
        });
        let housekeeping = Group::new(state.metrics.clone());
        housekeeping.spawn(Sweeper::new(state.clone()));
        for transport in transports {
            housekeeping.spawn(Delivery::new(
                state.catalog.clone(),
                transport,
                state.metrics.clone(),
                node.clone(),
            ));
        }
        let sandbox = match role.workers {
            Some(_) => {
                let support = crate::jobs::sandbox::Support::detect();
                if let Some(missing) = support.missing() {
                    tracing::warn!(
                        missing,
                        "transform children are confined less on this kernel"
                    );
                }
                support.to_string()
            }
            None => "none (no workers)".into(),
        };
        tracing::info!(
            addr = %listener.local_addr()?,
            https = https.is_some(),
            api = role.api,
            workers = role.workers_label().as_str(),
            queue = state.queue.name(),
            sandbox = sandbox.as_str(),
            "satchel is serving"
        );

        let router = match role.api {
            true => crate::http::router(state.clone()),
            false => crate::http::ops_router(state.clone()),
        };
        let limits = &state.config.limits;
        let slots = Slots::new(limits.max_connections, state.metrics.clone());
        let connection_limits = crate::http::conn::Limits {
            header_read_timeout: limits.header_read_timeout,
            download_stall: limits.download_stall,
        };
        let metrics = state.metrics.clone();
        match https {
            None => {
                let listener = Plain::new(listener, slots);
                serve(listener, router, connection_limits, metrics, shutdown).await
            }
            Some(certificates) => {
                let reloads = crate::tls::server::reload_on_hangup(certificates.clone())?;
                let listener = TlsListener::with_slots(listener, certificates.acceptor()?, slots)?;
                serve(listener, router, connection_limits, metrics, shutdown).await;
                reloads.abort();
            }
        }
        tracing::info!("no longer accepting requests; finishing jobs");
        housekeeping.token().cancel();
        if let Some(pool) = pool {
            pool.shutdown(state.config.shutdown_grace).await;
        }
        state.queue.close().await;
        housekeeping.shutdown(state.config.shutdown_grace).await;
        let requeued = state.queue.recover().await?;
        tracing::info!(requeued, "stopped");
        Ok(())
    }
}

/// What each satchel binary (`satchel`, `satchel-bench`) does first, before any other thread
/// exists: bound the heap, make ring rustls's provider ([`crate::tls::install_provider`]), then
/// log to stderr as `SATCHEL_LOG` says.
/// `SATCHEL_LOG_FORMAT=json` gives one JSON object per line; plain text has colours only on a
/// terminal.
pub fn init_process() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    bound_the_heap();
    crate::tls::install_provider();
    // With RUST_BACKTRACE=1 (common in containers) anyhow would capture a backtrace with every
    // error, and the first one logged would resolve it: 310 MiB of RSS, kept for good. Errors
    // are logged with their causes instead; panics still print their backtrace.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Before any other thread exists: nothing reads the environment concurrently.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SATCHEL_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
        )
        .with_writer(std::io::stderr);
    match std::env::var("SATCHEL_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        Ok("json") => logs.json().init(),
        Ok(other) => anyhow::bail!("SATCHEL_LOG_FORMAT must be text or json, not {other:?}"),
    }
    Ok(())
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

/// Empties the scratch directory of an earlier run (or makes it). The directory itself stays:
/// it may be a mount point of its own, a tmpfs for jobs' files, say, which cannot be removed.
fn clear_scratch(work_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(work_dir)?;
    for entry in std::fs::read_dir(work_dir)? {
        let entry = entry?;
        match entry.file_type()?.is_dir() {
            true => std::fs::remove_dir_all(entry.path())?,
            false => std::fs::remove_file(entry.path())?,
        }
    }
    Ok(())
}
