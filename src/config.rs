//! Configuration: built-in defaults, then a TOML file (`--config`), then `SATCHEL_*` variables.
//! Every key is documented in the README under "Configuration".

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

/// Settings as read from a file or the environment, every one optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
    api_tokens: Option<Vec<String>>,
    max_upload_bytes: Option<u64>,
    link_mode: Option<LinkMode>,
    link_max_ttl_seconds: Option<u64>,
    link_secret: Option<String>,
    link_secret_file: Option<PathBuf>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    workers: Option<usize>,
    job_timeout_seconds: Option<u64>,
    job_max_attempts: Option<u32>,
    job_memory_limit_mib: Option<u64>,
    worker_exe: Option<PathBuf>,
    presets: Option<PathBuf>,
    sweep_interval_seconds: Option<u64>,
    shutdown_grace_seconds: Option<u64>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_bucket_prefix: Option<String>,
    s3_path_style: Option<bool>,
    s3_part_size_bytes: Option<usize>,
    s3_upload_concurrency: Option<usize>,
    s3_payload_signing: Option<PayloadSigning>,
    amqp_url: Option<String>,
    amqp_prefix: Option<String>,
}

macro_rules! overlay {
    ($base:ident, $top:ident, $($field:ident),+) => {
        $( if $top.$field.is_some() { $base.$field = $top.$field; } )+
    };
}

impl Layer {
    fn overlay(&mut self, top: Layer) {
        overlay!(
            self,
            top,
            listen,
            public_url,
            data_dir,
            api_tokens,
            max_upload_bytes,
            link_mode,
            link_max_ttl_seconds,
            link_secret,
            link_secret_file,
            webhook_url,
            webhook_secret,
            workers,
            job_timeout_seconds,
            job_max_attempts,
            job_memory_limit_mib,
            worker_exe,
            presets,
            sweep_interval_seconds,
            shutdown_grace_seconds,
            database_url,
            database_max_connections,
            s3_endpoint,
            s3_region,
            s3_access_key_id,
            s3_secret_access_key,
            s3_bucket_prefix,
            s3_path_style,
            s3_part_size_bytes,
            s3_upload_concurrency,
            s3_payload_signing,
            amqp_url,
            amqp_prefix
        );
    }

    fn from_env(vars: impl Iterator<Item = (String, String)>) -> Result<Layer, String> {
        let mut table = toml::Table::new();
        for (key, value) in vars {
            let Some(name) = key.strip_prefix("SATCHEL_") else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            let value = match name.as_str() {
                "api_tokens" => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| toml::Value::String(t.to_owned()))
                        .collect(),
                ),
                "max_upload_bytes"
                | "link_max_ttl_seconds"
                | "workers"
                | "job_timeout_seconds"
                | "job_max_attempts"
                | "job_memory_limit_mib"
                | "sweep_interval_seconds"
                | "shutdown_grace_seconds"
                | "s3_part_size_bytes"
                | "s3_upload_concurrency"
                | "database_max_connections" => toml::Value::Integer(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| format!("{key} must be a whole number"))?,
                ),
                "s3_path_style" => toml::Value::Boolean(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| format!("{key} must be true or false"))?,
                ),
                // Variables that configure logging or tests, not the service. The suite's
                // `SATCHEL_TEST_*` reach the binaries it starts, so none of them is a key.
                "log" => continue,
                test if test.starts_with("test_") => continue,
                _ => toml::Value::String(value),
            };
            table.insert(name, value);
        }
        Layer::deserialize(toml::Value::Table(table)).map_err(|e| format!("environment: {e}"))
    }
}

/// Which real backends are configured; `None` means the embedded default.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub bucket_prefix: String,
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

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Base of the links handed out, e.g. `https://media.example.com`.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// Empty means "generate one on first start and keep it in the data directory".
    pub api_tokens: Vec<SecretString>,
    pub max_upload_bytes: u64,
    pub link_mode: LinkMode,
    pub link_max_ttl: Duration,
    pub link_secret: Option<SecretString>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<SecretString>,
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
        let mut layer = Layer::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            layer.overlay(toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        layer.overlay(Layer::from_env(env)?);
        Self::resolve(layer)
    }

    fn resolve(l: Layer) -> Result<Config, String> {
        let link_secret = match (l.link_secret, l.link_secret_file) {
            (Some(s), _) => Some(s),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read link_secret_file {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let s3 = match l.s3_endpoint.is_some() || l.s3_access_key_id.is_some() {
            false => None,
            true => Some(S3Settings {
                endpoint: l.s3_endpoint,
                region: l.s3_region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id: l
                    .s3_access_key_id
                    .ok_or("SATCHEL_S3_ACCESS_KEY_ID is missing")?,
                secret_access_key: l
                    .s3_secret_access_key
                    .ok_or("SATCHEL_S3_SECRET_ACCESS_KEY is missing")?
                    .into(),
                bucket_prefix: l.s3_bucket_prefix.unwrap_or_else(|| "satchel-".into()),
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
        Ok(Config {
            listen: l.listen.unwrap_or(([127, 0, 0, 1], 8080).into()),
            public_url: l.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            data_dir: l.data_dir.unwrap_or_else(|| "./satchel-data".into()),
            api_tokens: l
                .api_tokens
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            max_upload_bytes: l.max_upload_bytes.unwrap_or(2 << 30),
            link_mode,
            link_max_ttl: Duration::from_secs(
                l.link_max_ttl_seconds
                    .unwrap_or(3600)
                    .clamp(1, LINK_TTL_CEILING),
            ),
            link_secret: link_secret.map(Into::into),
            webhook_url: l.webhook_url,
            webhook_secret: l.webhook_secret.map(Into::into),
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
        })
    }
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
    fn link_ttl_never_exceeds_seven_days() {
        let c =
            Config::load_from(None, env(&[("SATCHEL_LINK_MAX_TTL_SECONDS", "99999999")])).unwrap();
        assert_eq!(c.link_max_ttl, Duration::from_secs(LINK_TTL_CEILING));
    }

    #[test]
    fn unknown_keys_are_errors_not_silence() {
        assert!(Config::load_from(None, env(&[("SATCHEL_LISTN", "x")])).is_err());
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
}
