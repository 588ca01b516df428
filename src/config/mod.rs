//! Configuration: built-in defaults, then a TOML file (`--config`), then `SATCHEL_*` variables.
//! Every key is documented in the README under "Configuration".

mod layer;

pub use layer::KEYS;

use crate::limits::client_ip::Network;
use crate::limits::{OnError, Rates};
use layer::Layer;
use secrecy::SecretString;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Links never live longer than this, whatever the configuration says.
pub const LINK_TTL_CEILING: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    Service,
    Presigned,
}

/// Whether S3 request bodies carry a SigV4 payload hash. Unsigned bodies still go with a
/// CRC32C the store checks, so corruption is caught either way; what the hash adds is
/// protection from someone who can rewrite the traffic, which TLS already gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadSigning {
    /// Sign unless the endpoint is `https://` (or AWS itself, which always is).
    Auto,
    Always,
    Never,
}

/// Which real backends are configured; `None` means the embedded default.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub bucket_prefix: String,
    /// The HMAC key of new chat buckets' names (`s3_bucket_key`); `None`: generated and kept
    /// in the data directory.
    pub bucket_key: Option<SecretString>,
    pub path_style: bool,
    /// Multipart part size; memory per upload is bounded by part size × (concurrency + 1).
    pub part_size_bytes: usize,
    /// Parts of one upload in flight at once.
    pub upload_concurrency: usize,
    pub payload_signing: PayloadSigning,
}

impl S3Settings {
    /// Whether request bodies are hashed into the signature (see [`PayloadSigning`]).
    pub fn sign_payloads(&self) -> bool {
        match self.payload_signing {
            PayloadSigning::Always => true,
            PayloadSigning::Never => false,
            PayloadSigning::Auto => self
                .endpoint
                .as_deref()
                .is_some_and(|e| !e.to_ascii_lowercase().starts_with("https://")),
        }
    }
}

/// What a multipart upload may hold besides its file: each part's header block, and each part
/// that is not the file (the preamble before the first part counts as one).
#[derive(Debug, Clone, Copy)]
pub struct MultipartLimits {
    pub header_bytes: usize,
    pub field_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Base of the links handed out, e.g. `https://media.example.com`.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// Empty means "generate one on first start and keep it in the data directory".
    pub api_tokens: Vec<SecretString>,
    pub max_upload_bytes: u64,
    /// Storage quotas (originals and variants) per chat and per uploader; `None`: off.
    pub quota: crate::catalog::Quota,
    /// An upload body that sends nothing for this long is refused (slow-client defence).
    pub upload_idle_timeout: Duration,
    pub multipart: MultipartLimits,
    /// What image originals keep of their metadata at ingest (`original_metadata`).
    pub original_metadata: crate::strip::OriginalMetadata,
    pub link_mode: LinkMode,
    pub link_max_ttl: Duration,
    pub link_secret: Option<SecretString>,
    pub webhook_url: Option<String>,
    /// The keys that sign webhooks, each giving one `v1=` (several during a rotation); empty
    /// means "generate one on first start and keep it in the data directory".
    pub webhook_secrets: Vec<SecretString>,
    /// A webhook delivery that keeps failing is retried this long, then marked dead.
    pub webhook_max_age: Duration,
    pub workers: usize,
    pub job_timeout: Duration,
    pub job_max_attempts: u32,
    /// The ceiling on each job's child process (RLIMIT_DATA): a decoder that asks for more
    /// dies alone.
    pub job_memory_limit: u64,
    /// The `satchel-transform` executable that runs each job's transform; by default the one
    /// beside this executable.
    pub worker_exe: Option<PathBuf>,
    pub presets: Option<PathBuf>,
    pub sweep_interval: Duration,
    /// How long a resumable upload may take once created (`Upload-Expires`); at most a day,
    /// since buckets abort multipart uploads older than that.
    pub tus_expiry: Duration,
    pub shutdown_grace: Duration,
    pub database_url: Option<String>,
    /// Size of the PostgreSQL connection pool, per process (default 10).
    pub database_max_connections: u32,
    pub s3: Option<S3Settings>,
    pub amqp_url: Option<String>,
    /// Names the broker objects: `<prefix>.jobs.image`, `<prefix>.events`, ...
    pub amqp_prefix: String,
    pub limits: LimitSettings,
    /// satchel's own HTTPS: the certificate chain and key files (PEM), re-read on SIGHUP.
    pub tls: Option<ServerTls>,
    /// Certificates (PEM) every verified client connection trusts besides the system roots.
    pub tls_ca_file: Option<PathBuf>,
}

/// `tls_cert_file` and `tls_key_file`, always both.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Rate limits and caps (every one off unless set), and where the counters live.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub rates: Rates,
    pub max_uploads_in_flight_per_user: Option<usize>,
    pub max_uploads_in_flight: Option<usize>,
    /// Jobs of one chat running at once (embedded queue); `None`: no cap, only fair order.
    pub max_jobs_in_flight_per_chat: Option<u32>,
    /// Counters shared by every node; `None`: in this process.
    pub redis_url: Option<String>,
    /// Prepended to the Redis keys (`<prefix>:rl:...`).
    pub redis_prefix: String,
    pub on_error: OnError,
    /// Peers whose `Forwarded` / `X-Forwarded-For` is believed for `rate_downloads_per_ip`.
    pub trusted_proxies: Vec<Network>,
    /// An upload body slower than this over a window is cut; `None`: off (rate 0).
    pub upload_min_rate: Option<MinRate>,
    /// A connection that has not sent a request's whole header block this long after it
    /// began waiting for one (new, or idle between requests) is closed.
    pub header_read_timeout: Duration,
    /// Open connections per node; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// A response that the client reads nothing of for this long is dropped.
    pub download_stall: Duration,
}

/// `upload_min_bytes_per_second` over `upload_rate_window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_second: u64,
    pub window: Duration,
}

impl Config {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        Self::load_from(file, std::env::vars())
    }

    pub fn load_from(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let mut layer = match file {
            Some(path) => Layer::from_file(path)?,
            None => Layer::default(),
        };
        layer.overlay(Layer::from_env(env)?);
        Self::resolve(layer)
    }

    fn resolve(l: Layer) -> Result<Config, String> {
        let link_secret = one_secret("link_secret", l.link_secret, l.link_secret_file)?;
        let webhook_secrets =
            webhook_secrets_of(l.webhook_secret, l.webhook_secrets, l.webhook_secret_file)?;
        let bucket_key = one_secret("s3_bucket_key", l.s3_bucket_key, l.s3_bucket_key_file)?;
        let s3 = match l.s3_endpoint.is_some() || l.s3_access_key_id.is_some() {
            false => None,
            true => Some(S3Settings {
                endpoint: l.s3_endpoint.map(|u| u.0),
                region: l.s3_region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id: l
                    .s3_access_key_id
                    .ok_or("SATCHEL_S3_ACCESS_KEY_ID is missing")?,
                secret_access_key: l
                    .s3_secret_access_key
                    .ok_or("SATCHEL_S3_SECRET_ACCESS_KEY is missing")?
                    .into(),
                bucket_prefix: l.s3_bucket_prefix.unwrap_or_else(|| "satchel-".into()),
                bucket_key: bucket_key.map(Into::into),
                path_style: l.s3_path_style.unwrap_or(true),
                part_size_bytes: l.s3_part_size_bytes.unwrap_or(8 << 20),
                upload_concurrency: l.s3_upload_concurrency.unwrap_or(4),
                payload_signing: l.s3_payload_signing.unwrap_or(PayloadSigning::Auto),
            }),
        };
        let link_mode = l.link_mode.unwrap_or(LinkMode::Service);
        if link_mode == LinkMode::Presigned && s3.is_none() {
            return Err("link_mode = presigned needs an S3 store".into());
        }
        let workers = l
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if workers == 0 {
            return Err("workers must be at least 1".into());
        }
        let tls = match (l.tls_cert_file, l.tls_key_file) {
            (None, None) => None,
            (Some(cert_file), Some(key_file)) => Some(ServerTls {
                cert_file,
                key_file,
            }),
            _ => {
                return Err(
                    "set both tls_cert_file and tls_key_file (SATCHEL_TLS_CERT_FILE, \
                     SATCHEL_TLS_KEY_FILE) for HTTPS, or neither"
                        .into(),
                )
            }
        };
        Ok(Config {
            listen: l.listen.unwrap_or(([127, 0, 0, 1], 8080).into()),
            public_url: l.public_url.map(|u| u.0.trim_end_matches('/').to_owned()),
            data_dir: l.data_dir.unwrap_or_else(|| "./satchel-data".into()),
            api_tokens: l
                .api_tokens
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            max_upload_bytes: l.max_upload_bytes.unwrap_or(2 << 30),
            quota: crate::catalog::Quota {
                chat_bytes: l.max_chat_bytes,
                user_bytes: l.max_user_bytes,
            },
            upload_idle_timeout: Duration::from_secs(
                l.upload_idle_timeout_seconds.unwrap_or(30).max(1),
            ),
            multipart: MultipartLimits {
                header_bytes: l.multipart_max_header_bytes.unwrap_or(8 << 10),
                field_bytes: l.multipart_max_field_bytes.unwrap_or(16 << 10),
            },
            original_metadata: l
                .original_metadata
                .unwrap_or(crate::strip::OriginalMetadata::StripLocation),
            link_mode,
            link_max_ttl: Duration::from_secs(
                l.link_max_ttl_seconds
                    .unwrap_or(3600)
                    .clamp(1, LINK_TTL_CEILING),
            ),
            link_secret: link_secret.map(Into::into),
            webhook_url: l.webhook_url.map(|u| u.0),
            webhook_secrets: webhook_secrets.into_iter().map(Into::into).collect(),
            webhook_max_age: Duration::from_secs(
                l.webhook_max_age_seconds.unwrap_or(24 * 3600).max(1),
            ),
            workers,
            job_timeout: Duration::from_secs(l.job_timeout_seconds.unwrap_or(300).max(1)),
            job_max_attempts: l.job_max_attempts.unwrap_or(3).max(1),
            job_memory_limit: l.job_memory_limit_mib.unwrap_or(2048).max(16) << 20,
            worker_exe: l.worker_exe,
            presets: l.presets,
            sweep_interval: Duration::from_secs(l.sweep_interval_seconds.unwrap_or(5).max(1)),
            tus_expiry: Duration::from_secs(l.tus_expiry_seconds.unwrap_or(86400).clamp(1, 86400)),
            shutdown_grace: Duration::from_secs(l.shutdown_grace_seconds.unwrap_or(30)),
            database_url: l.database_url,
            database_max_connections: l.database_max_connections.unwrap_or(10).max(1),
            s3,
            amqp_url: l.amqp_url,
            amqp_prefix: l.amqp_prefix.unwrap_or_else(|| "satchel".into()),
            limits: LimitSettings {
                rates: Rates {
                    uploads_per_user: l.rate_uploads_per_user,
                    uploads_per_chat: l.rate_uploads_per_chat,
                    upload_bytes_per_chat: l.rate_upload_bytes_per_chat,
                    links_per_user: l.rate_links_per_user,
                    downloads_per_user: l.rate_downloads_per_user,
                    downloads_per_ip: l.rate_downloads_per_ip,
                    upload_tickets_per_user: l.rate_upload_tickets_per_user,
                    tus_requests_per_upload: l.rate_tus_requests_per_upload,
                },
                max_uploads_in_flight_per_user: l.max_uploads_in_flight_per_user,
                max_uploads_in_flight: l.max_uploads_in_flight,
                max_jobs_in_flight_per_chat: l.max_jobs_in_flight_per_chat.map(|n| n.max(1)),
                redis_url: l.redis_url,
                redis_prefix: l.redis_prefix.unwrap_or_else(|| "satchel".into()),
                on_error: l.rate_limit_on_error.unwrap_or(OnError::Open),
                trusted_proxies: l.trusted_proxies.unwrap_or_default(),
                upload_min_rate: match l.upload_min_bytes_per_second.unwrap_or(1024) {
                    0 => None,
                    bytes_per_second => Some(MinRate {
                        bytes_per_second,
                        window: Duration::from_secs(
                            l.upload_rate_window_seconds.unwrap_or(30).max(1),
                        ),
                    }),
                },
                header_read_timeout: Duration::from_secs(
                    l.header_read_timeout_seconds.unwrap_or(10).max(1),
                ),
                max_connections: l
                    .max_connections
                    .unwrap_or(10_000)
                    .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
                download_stall: Duration::from_secs(l.download_stall_seconds.unwrap_or(60).max(1)),
            },
            tls,
            tls_ca_file: l.tls_ca_file,
        })
    }
}

/// A secret shared by every node, given as `key` or in the file of `key_file` (`key` wins);
/// at least 32 bytes either way.
fn one_secret(
    key: &str,
    value: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<String>, String> {
    if let Some(value) = value {
        crate::secrets::check(key, Some(&value))?;
        return Ok(Some(value));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let file_key = format!("{key}_file");
    let mut secrets = crate::secrets::read_file(&file_key, &path)?;
    if secrets.len() > 1 {
        return Err(format!(
            "{file_key}: {} holds {} lines; it must hold one secret",
            path.display(),
            secrets.len()
        ));
    }
    Ok(secrets.pop())
}

/// The webhook's keys: `webhook_secret` (one), `webhook_secrets` (a rotation: every one signs)
/// or `webhook_secret_file` (one a line); empty when none is set.
fn webhook_secrets_of(
    one: Option<String>,
    list: Option<Vec<String>>,
    file: Option<PathBuf>,
) -> Result<Vec<String>, String> {
    let secrets = match (one, list) {
        (Some(_), Some(_)) => {
            return Err(
                "set webhook_secret or webhook_secrets, not both (webhook_secrets lists every \
                 secret of a rotation)"
                    .into(),
            )
        }
        (Some(one), None) => {
            crate::secrets::check("webhook_secret", Some(&one))?;
            vec![one]
        }
        (None, Some(list)) => {
            if list.is_empty() {
                return Err("webhook_secrets (SATCHEL_WEBHOOK_SECRETS) lists no secret".into());
            }
            for secret in &list {
                crate::secrets::check("webhook_secrets", Some(secret))?;
            }
            list
        }
        (None, None) => match file {
            Some(path) => crate::secrets::read_file("webhook_secret_file", &path)?,
            None => Vec::new(),
        },
    };
    Ok(secrets)
}

#[cfg(test)]
mod tests;
