//! Abuse control at the edge: rate limits ([`Limits::check`], GCRA in this process or in
//! Redis shared by every node) and caps on uploads in flight ([`InFlight`]).

pub mod client_ip;
pub mod inflight;
pub mod rate;
pub mod store;

pub use inflight::InFlight;
pub use rate::Rate;

use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use store::Store;

/// Every rate limit there is. Its name is the policy's name in the `RateLimit-Policy` and
/// `RateLimit` headers and the `limit` label of `satchel_rate_limit_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Name {
    UploadsPerUser,
    UploadsPerChat,
    UploadBytesPerChat,
    LinksPerUser,
    DownloadsPerUser,
    DownloadsPerIp,
    UploadTicketsPerUser,
    TusRequestsPerUpload,
    /// Not a rate: the caps on uploads in flight, answered the same way.
    UploadsInFlightPerUser,
    UploadsInFlight,
}

impl Name {
    pub fn as_str(self) -> &'static str {
        match self {
            Name::UploadsPerUser => "uploads_per_user",
            Name::UploadsPerChat => "uploads_per_chat",
            Name::UploadBytesPerChat => "upload_bytes_per_chat",
            Name::LinksPerUser => "links_per_user",
            Name::DownloadsPerUser => "downloads_per_user",
            Name::DownloadsPerIp => "downloads_per_ip",
            Name::UploadTicketsPerUser => "upload_tickets_per_user",
            Name::TusRequestsPerUpload => "tus_requests_per_upload",
            Name::UploadsInFlightPerUser => "uploads_in_flight_per_user",
            Name::UploadsInFlight => "uploads_in_flight",
        }
    }
}

/// What happens to a check when the store cannot be asked (Redis down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Let the request through (the default: an outage of Redis is no outage of satchel).
    Open,
    /// Refuse it, `429` with `Retry-After: 1`.
    Closed,
}

/// The configured rates, each `None` when off.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    pub uploads_per_user: Option<Rate>,
    pub uploads_per_chat: Option<Rate>,
    pub upload_bytes_per_chat: Option<Rate>,
    pub links_per_user: Option<Rate>,
    pub downloads_per_user: Option<Rate>,
    pub downloads_per_ip: Option<Rate>,
    pub upload_tickets_per_user: Option<Rate>,
    pub tus_requests_per_upload: Option<Rate>,
}

impl Rates {
    fn of(&self, name: Name) -> Option<Rate> {
        match name {
            Name::UploadsPerUser => self.uploads_per_user,
            Name::UploadsPerChat => self.uploads_per_chat,
            Name::UploadBytesPerChat => self.upload_bytes_per_chat,
            Name::LinksPerUser => self.links_per_user,
            Name::DownloadsPerUser => self.downloads_per_user,
            Name::DownloadsPerIp => self.downloads_per_ip,
            Name::UploadTicketsPerUser => self.upload_tickets_per_user,
            Name::TusRequestsPerUpload => self.tus_requests_per_upload,
            Name::UploadsInFlightPerUser | Name::UploadsInFlight => None,
        }
    }
}

/// A request over a limit: which one, and when to come back. Answered `429 rate_limited`.
#[derive(Debug, Clone)]
pub struct Limited {
    pub name: Name,
    /// `q` and `w` of `RateLimit-Policy` (`w` in seconds, rounded up).
    pub quota: u64,
    pub window: Duration,
    pub retry_after: Duration,
    pub remaining: u64,
}

impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "over the {} limit; retry after {} s",
            self.name.as_str(),
            self.retry_after_seconds()
        )
    }
}

impl std::error::Error for Limited {}

impl Limited {
    /// `Retry-After` is whole seconds: rounded up, so a client that waits that long passes.
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }

    /// `RateLimit-Policy` (IETF httpapi draft): `"<name>";q=<quota>;w=<window s>`.
    pub fn policy_header(&self) -> String {
        let window = self.window.as_millis().div_ceil(1000).max(1);
        format!("\"{}\";q={};w={window}", self.name.as_str(), self.quota)
    }

    /// `RateLimit`: `"<name>";r=<remaining>;t=<seconds until it passes>`.
    pub fn limit_header(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.name.as_str(),
            self.remaining,
            self.retry_after_seconds()
        )
    }
}

pub struct Limits {
    rates: Rates,
    store: Store,
    on_error: OnError,
    metrics: Arc<Metrics>,
}

impl Limits {
    /// `redis`: the server's URL and the prefix of its keys; `None`: counters in this process.
    pub fn new(
        rates: Rates,
        redis: Option<(&str, &str)>,
        on_error: OnError,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let store = match redis {
            Some((url, prefix)) => Store::Redis(store::RedisStore::new(url, prefix)?),
            None => Store::Local(Default::default()),
        };
        Ok(Self {
            rates,
            store,
            on_error,
            metrics,
        })
    }

    pub fn store_name(&self) -> &'static str {
        self.store.name()
    }

    /// Spends `cost` units of limit `name` for `key` (a user, chat or address), or says when
    /// to come back. A limit that is off always passes.
    pub async fn check(&self, name: Name, key: &str, cost: u64) -> Result<(), Limited> {
        self.spend(name, key, cost, false).await
    }

    /// Counts `cost` units already spent (an upload's size once known), over the limit or not,
    /// so that the next request pays for them.
    pub async fn charge(&self, name: Name, key: &str, cost: u64) {
        let _ = self.spend(name, key, cost, true).await;
    }

    async fn spend(&self, name: Name, key: &str, cost: u64, force: bool) -> Result<(), Limited> {
        let Some(rate) = self.rates.of(name) else {
            return Ok(());
        };
        let store_key = format!("{}:{key}", name.as_str());
        let limited = |retry_after, remaining| Limited {
            name,
            quota: rate.count,
            window: rate.period,
            retry_after,
            remaining,
        };
        let (label, outcome) = match self.store.check(&store_key, &rate, cost, force).await {
            Ok(d) if d.allowed => ("allowed", Ok(())),
            Ok(d) => ("limited", Err(limited(d.retry_after, d.remaining))),
            Err(_) if self.on_error == OnError::Open => ("error", Ok(())),
            Err(_) => ("error", Err(limited(Duration::from_secs(1), 0))),
        };
        self.metrics.rate_limit_check(name.as_str(), label);
        outcome
    }
}
