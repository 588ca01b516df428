//! Configuration: built-in defaults, then a TOML file (`--config`), then `SATCHEL_*` variables.
//! Every key is documented in the README under "Configuration".

use crate::limits::client_ip::Network;
use crate::limits::{OnError, Rate, Rates};
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

/// `key: Type, "what the value must be, in words";` once per setting: the [`Layer`] of optional
/// values a file or the environment gives, [`KEYS`], and how a layer takes each key.
macro_rules! settings {
    ($($key:ident: $ty:ty, $expected:expr;)+) => {
        /// Settings as read from a file or the environment, every one optional.
        #[derive(Debug, Default)]
        struct Layer { $($key: Option<$ty>,)+ }

        /// Every key, in lowercase, and what its value must be.
        pub const KEYS: &[(&str, &str)] = &[$((stringify!($key), $expected)),+];

        impl Layer {
            fn overlay(&mut self, top: Layer) {
                $( if top.$key.is_some() { self.$key = top.$key; } )+
            }

            /// Takes `key`; `Err(None)` for an unknown key, `Err(Some(expected))` for a value
            /// that is not what the key needs.
            fn set(&mut self, key: &str, value: Raw) -> Result<(), Option<&'static str>> {
                match key {
                    $(stringify!($key) => {
                        self.$key = Some(value.read::<$ty>().ok_or(Some($expected))?)
                    })+
                    _ => return Err(None),
                }
                Ok(())
            }
        }
    };
}

settings! {
    listen: SocketAddr, "an IP address and port, e.g. 127.0.0.1:8080";
    public_url: HttpUrl, "an http:// or https:// URL, e.g. https://media.example.com";
    data_dir: PathBuf, "a path";
    api_tokens: Vec<String>, "a list of tokens (comma-separated in the environment)";
    max_upload_bytes: u64, "a whole number of bytes";
    max_chat_bytes: u64, "a whole number of bytes";
    max_user_bytes: u64, "a whole number of bytes";
    upload_idle_timeout_seconds: u64, "a whole number of seconds";
    upload_min_bytes_per_second: u64, "a whole number of bytes per second (0: off)";
    upload_rate_window_seconds: u64, "a whole number of seconds";
    header_read_timeout_seconds: u64, "a whole number of seconds";
    max_connections: usize, "a whole number of connections";
    download_stall_seconds: u64, "a whole number of seconds";
    multipart_max_header_bytes: usize, "a whole number of bytes";
    multipart_max_field_bytes: usize, "a whole number of bytes";
    link_mode: LinkMode, "service or presigned";
    link_max_ttl_seconds: u64, "a whole number of seconds";
    link_secret: String, "a string";
    link_secret_file: PathBuf, "a path";
    webhook_url: HttpUrl, "an http:// or https:// URL, e.g. https://chat.example.com/hooks/satchel";
    webhook_secret: String, "a string";
    webhook_secrets: Vec<String>, "a list of secrets (comma-separated in the environment)";
    webhook_secret_file: PathBuf, "a path";
    webhook_max_age_seconds: u64, "a whole number of seconds";
    workers: usize, "a whole number of jobs at once";
    job_timeout_seconds: u64, "a whole number of seconds";
    job_max_attempts: u32, "a whole number of attempts";
    job_memory_limit_mib: u64, "a whole number of MiB";
    worker_exe: PathBuf, "a path";
    presets: PathBuf, "a path";
    sweep_interval_seconds: u64, "a whole number of seconds";
    shutdown_grace_seconds: u64, "a whole number of seconds";
    database_url: String, "a sqlite:// or postgres:// URL";
    database_max_connections: u32, "a whole number of connections";
    s3_endpoint: HttpUrl, "an http:// or https:// URL, e.g. http://127.0.0.1:3900";
    s3_region: String, "a string";
    s3_access_key_id: String, "a string";
    s3_secret_access_key: String, "a string";
    s3_bucket_prefix: String, "a string";
    s3_bucket_key: String, "a string";
    s3_bucket_key_file: PathBuf, "a path";
    s3_path_style: bool, "true or false";
    s3_part_size_bytes: usize, "a whole number of bytes";
    s3_upload_concurrency: usize, "a whole number of parts";
    s3_payload_signing: PayloadSigning, "auto, always or never";
    amqp_url: String, "an amqp:// or amqps:// URL";
    amqp_prefix: String, "a string";
    tls_cert_file: PathBuf, "a path";
    tls_key_file: PathBuf, "a path";
    tls_ca_file: PathBuf, "a path";
    rate_uploads_per_user: Rate, RATE;
    rate_uploads_per_chat: Rate, RATE;
    rate_upload_bytes_per_chat: Rate, RATE;
    rate_links_per_user: Rate, RATE;
    rate_downloads_per_user: Rate, RATE;
    rate_downloads_per_ip: Rate, RATE;
    max_uploads_in_flight_per_user: usize, "a whole number of uploads";
    max_uploads_in_flight: usize, "a whole number of uploads";
    max_jobs_in_flight_per_chat: u32, "a whole number of jobs";
    redis_url: String, "a redis:// URL, e.g. redis://127.0.0.1:6379/0";
    redis_prefix: String, "a string";
    rate_limit_on_error: OnError, "open or closed";
    trusted_proxies: Vec<Network>, "a list of IP addresses or networks, e.g. 10.0.0.0/8 (comma-separated in the environment)";
}

/// What a rate must look like, in words.
const RATE: &str = "a rate, <count>/<period> with the period in ms, s, m, h or d, e.g. \"30/60s\"";

/// One value as written: a `SATCHEL_*` variable's text, or a TOML value from the file.
enum Raw {
    Env(String),
    File(toml::Value),
}

impl Raw {
    fn read<T: Setting>(self) -> Option<T> {
        match self {
            Raw::Env(text) => T::from_env(&text),
            Raw::File(value) => T::deserialize(value).ok(),
        }
    }
}

/// A setting's type: any TOML value serde reads as it in the file, and text in a variable
/// (read as a TOML string unless the type says otherwise).
trait Setting: serde::de::DeserializeOwned {
    fn from_env(text: &str) -> Option<Self> {
        Self::deserialize(toml::Value::String(text.to_owned())).ok()
    }
}

macro_rules! setting {
    ($($ty:ty),+) => { $(impl Setting for $ty {})+ };
    ($($ty:ty),+; parsed) => { $(impl Setting for $ty {
        fn from_env(text: &str) -> Option<Self> { text.trim().parse().ok() }
    })+ };
}
setting! { String, PathBuf, SocketAddr, LinkMode, PayloadSigning, HttpUrl, OnError }
setting! { u32, u64, usize, bool, Rate; parsed }
impl Setting for Vec<Network> {
    fn from_env(text: &str) -> Option<Self> {
        let items = text.split(',').map(str::trim).filter(|t| !t.is_empty());
        items.map(|t| t.parse().ok()).collect()
    }
}
impl Setting for Vec<String> {
    fn from_env(text: &str) -> Option<Self> {
        let items = text.split(',').map(str::trim).filter(|t| !t.is_empty());
        Some(items.map(str::to_owned).collect())
    }
}

/// An absolute `http://` or `https://` URL with a host, checked when the config is read.
#[derive(Debug)]
struct HttpUrl(String);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match reqwest::Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(HttpUrl(text)),
            _ => Err(serde::de::Error::custom("not an http(s) URL")),
        }
    }
}

fn env_name(key: &str) -> String {
    format!("SATCHEL_{}", key.to_ascii_uppercase())
}

/// The key nearest to `key`, when it is near enough to be a likely typo.
fn closest(key: &str) -> Option<&'static str> {
    let distance = |k: &&(&str, &str)| strsim::levenshtein(key, k.0);
    let (best, _) = KEYS.iter().min_by_key(distance)?;
    (strsim::levenshtein(key, best) <= 3).then_some(*best)
}

impl Layer {
    fn from_file(path: &Path) -> Result<Layer, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut layer = Layer::default();
        for (key, value) in table {
            layer.set(&key, Raw::File(value)).map_err(|e| {
                let problem = match e {
                    Some(expected) => format!("must be {expected}"),
                    None => unknown(&key, |k| format!("`{k}`")),
                };
                format!("{}: `{key}` {problem}", path.display())
            })?;
        }
        Ok(layer)
    }

    fn from_env(vars: impl Iterator<Item = (String, String)>) -> Result<Layer, String> {
        let mut layer = Layer::default();
        for (var, value) in vars {
            let Some(name) = var.strip_prefix("SATCHEL_") else {
                continue;
            };
            let key = name.to_ascii_lowercase();
            // Variables that configure logging or tests, not the service. The suite's
            // `SATCHEL_TEST_*` reach the binaries it starts, so none of them is a key.
            if key == "log" || key == "log_format" || key.starts_with("test_") {
                continue;
            }
            layer.set(&key, Raw::Env(value)).map_err(|e| match e {
                Some(expected) => format!("{var} must be {expected}"),
                None => format!("{var} {}", unknown(&key, env_name)),
            })?;
        }
        Ok(layer)
    }
}

/// "is not a known setting", with the likeliest intended key as `spell` writes it.
fn unknown(key: &str, spell: impl Fn(&str) -> String) -> String {
    let hint = closest(key).map(|k| format!(" (did you mean {}?)", spell(k)));
    format!("is not a known setting{}", hint.unwrap_or_default())
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
    /// The `satchel` executable that runs each job's transform; this one by default.
    pub worker_exe: Option<PathBuf>,
    pub presets: Option<PathBuf>,
    pub sweep_interval: Duration,
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
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn env_overrides_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("satchel.toml");
        std::fs::write(&file, "max_upload_bytes = 10\nworkers = 3\n").unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[("SATCHEL_WORKERS", "5"), ("SATCHEL_API_TOKENS", "a, b,")]),
        )
        .unwrap();
        assert_eq!(c.max_upload_bytes, 10);
        assert_eq!(c.workers, 5);
        let tokens: Vec<_> = c
            .api_tokens
            .iter()
            .map(|t| t.expose_secret().to_owned())
            .collect();
        assert_eq!(tokens, ["a", "b"]);
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.link_max_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn https_needs_both_the_certificate_and_its_key() {
        let cert = ("SATCHEL_TLS_CERT_FILE", "/cert.pem");
        let key = ("SATCHEL_TLS_KEY_FILE", "/key.pem");
        for one in [cert, key] {
            let e = Config::load_from(None, env(&[one])).unwrap_err();
            assert!(
                e.contains("tls_cert_file") && e.contains("tls_key_file"),
                "{e}"
            );
        }
        let c = Config::load_from(None, env(&[cert, key])).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/cert.pem"));
        assert_eq!(tls.key_file, PathBuf::from("/key.pem"));
        assert!(Config::load_from(None, env(&[])).unwrap().tls.is_none());
    }

    #[test]
    fn link_ttl_never_exceeds_seven_days() {
        let c =
            Config::load_from(None, env(&[("SATCHEL_LINK_MAX_TTL_SECONDS", "99999999")])).unwrap();
        assert_eq!(c.link_max_ttl, Duration::from_secs(LINK_TTL_CEILING));
    }

    #[test]
    fn unknown_keys_are_errors_not_silence() {
        let e = Config::load_from(None, env(&[("SATCHEL_LISTN", "x")])).unwrap_err();
        assert_eq!(
            e,
            "SATCHEL_LISTN is not a known setting (did you mean SATCHEL_LISTEN?)"
        );
    }

    #[test]
    fn payloads_are_signed_only_where_tls_does_not_guard_them() {
        let s3 = |pairs: &[(&str, &str)]| {
            let mut all = vec![
                ("SATCHEL_S3_ACCESS_KEY_ID", "k"),
                ("SATCHEL_S3_SECRET_ACCESS_KEY", "s"),
            ];
            all.extend_from_slice(pairs);
            Config::load_from(None, env(&all)).unwrap().s3.unwrap()
        };
        assert!(!s3(&[]).sign_payloads(), "AWS itself is reached over TLS");
        assert!(s3(&[("SATCHEL_S3_ENDPOINT", "http://127.0.0.1:3900")]).sign_payloads());
        assert!(!s3(&[("SATCHEL_S3_ENDPOINT", "HTTPS://s3.example.com")]).sign_payloads());
        assert!(s3(&[
            ("SATCHEL_S3_ENDPOINT", "https://s3.example.com"),
            ("SATCHEL_S3_PAYLOAD_SIGNING", "always")
        ])
        .sign_payloads());
        assert!(!s3(&[
            ("SATCHEL_S3_ENDPOINT", "http://127.0.0.1:3900"),
            ("SATCHEL_S3_PAYLOAD_SIGNING", "never")
        ])
        .sign_payloads());
        assert!(
            Config::load_from(None, env(&[("SATCHEL_S3_PAYLOAD_SIGNING", "sometimes")])).is_err()
        );
    }

    #[test]
    fn webhook_secrets_rotate_as_a_toml_array_a_comma_list_or_lines_of_a_file() {
        let (new, old) = ("n".repeat(32), "o".repeat(40));
        let secrets = |c: Config| -> Vec<String> {
            let exposed = c
                .webhook_secrets
                .iter()
                .map(|s| s.expose_secret().to_owned());
            exposed.collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("satchel.toml");
        std::fs::write(&toml, format!("webhook_secrets = [\"{new}\", \"{old}\"]\n")).unwrap();
        let c = Config::load_from(Some(&toml), env(&[])).unwrap();
        assert_eq!(secrets(c), [new.as_str(), old.as_str()]);

        let list = format!("{new}, {old}");
        let c = Config::load_from(None, env(&[("SATCHEL_WEBHOOK_SECRETS", &list)])).unwrap();
        assert_eq!(secrets(c), [new.as_str(), old.as_str()]);

        let file = dir.path().join("webhook-secret");
        std::fs::write(&file, format!("{new}\n\n  {old}  \n")).unwrap();
        let path = file.to_str().unwrap();
        let c = Config::load_from(None, env(&[("SATCHEL_WEBHOOK_SECRET_FILE", path)])).unwrap();
        assert_eq!(secrets(c), [new.as_str(), old.as_str()]);

        // The value wins over the file, as for link_secret.
        let c = Config::load_from(
            None,
            env(&[
                ("SATCHEL_WEBHOOK_SECRET_FILE", path),
                ("SATCHEL_WEBHOOK_SECRET", &old),
            ]),
        )
        .unwrap();
        assert_eq!(secrets(c), [old.as_str()]);
        assert!(secrets(Config::load_from(None, env(&[])).unwrap()).is_empty());
        let e = Config::load_from(None, env(&[("SATCHEL_WEBHOOK_SECRETS", " , ")])).unwrap_err();
        assert_eq!(
            e,
            "webhook_secrets (SATCHEL_WEBHOOK_SECRETS) lists no secret"
        );
    }

    #[test]
    fn the_bucket_key_comes_from_its_value_or_its_file() {
        let key = "k".repeat(32);
        let s3 = [
            ("SATCHEL_S3_ACCESS_KEY_ID", "k"),
            ("SATCHEL_S3_SECRET_ACCESS_KEY", "s"),
        ];
        let bucket_key = |pairs: &[(&str, &str)]| {
            let all: Vec<_> = s3.iter().chain(pairs).copied().collect();
            let c = Config::load_from(None, env(&all)).unwrap();
            let key = c.s3.unwrap().bucket_key;
            key.map(|k| k.expose_secret().to_owned())
        };
        assert_eq!(bucket_key(&[]), None);
        assert_eq!(
            bucket_key(&[("SATCHEL_S3_BUCKET_KEY", &key)]),
            Some(key.clone())
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bucket-key");
        std::fs::write(&file, format!("{key}\n")).unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(
            bucket_key(&[("SATCHEL_S3_BUCKET_KEY_FILE", path)]),
            Some(key.clone())
        );
        std::fs::write(&file, format!("{key}\n{key}\n")).unwrap();
        let all: Vec<_> = s3
            .iter()
            .copied()
            .chain([("SATCHEL_S3_BUCKET_KEY_FILE", path)])
            .collect();
        let e = Config::load_from(None, env(&all)).unwrap_err();
        assert!(e.contains("it must hold one secret"), "{e}");
    }
}
