//! The key table: every setting once, with its type and what its value must be (`settings!`),
//! and how a TOML file or the `SATCHEL_*` variables fill a [`Layer`] of optional values.

use super::{LinkMode, PayloadSigning};
use crate::limits::client_ip::Network;
use crate::limits::{OnError, Rate};
use crate::strip::OriginalMetadata;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `key: Type, "what the value must be, in words";` once per setting: the [`Layer`] of optional
/// values a file or the environment gives, [`KEYS`], and how a layer takes each key.
macro_rules! settings {
    ($($key:ident: $ty:ty, $expected:expr;)+) => {
        /// Settings as read from a file or the environment, every one optional.
        #[derive(Debug, Default)]
        pub(super) struct Layer { $(pub(super) $key: Option<$ty>,)+ }

        /// Every key, in lowercase, and what its value must be.
        pub const KEYS: &[(&str, &str)] = &[$((stringify!($key), $expected)),+];

        impl Layer {
            pub(super) fn overlay(&mut self, top: Layer) {
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
    original_metadata: OriginalMetadata, "strip_location, strip_all or keep";
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
    rate_upload_tickets_per_user: Rate, RATE;
    rate_tus_requests_per_upload: Rate, RATE;
    tus_expiry_seconds: u64, "a whole number of seconds from 1 to 86400";
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
setting! { String, PathBuf, SocketAddr, LinkMode, PayloadSigning, HttpUrl, OnError, OriginalMetadata }
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
pub(super) struct HttpUrl(pub(super) String);

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
    pub(super) fn from_file(path: &Path) -> Result<Layer, String> {
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

    pub(super) fn from_env(vars: impl Iterator<Item = (String, String)>) -> Result<Layer, String> {
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
