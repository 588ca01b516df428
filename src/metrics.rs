//! Prometheus metrics, named for what an operator asks. One registry per app instance, so
//! tests that start several servers in one process do not share counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOutcome {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    pub task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitOutcome {
    pub limit: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    pub scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub uploads: Family<KindOutcome, Counter>,
    pub upload_bytes: Counter,
    pub jobs: Family<KindOutcome, Counter>,
    pub job_seconds: Family<KindLabel, Histogram>,
    pub queue_depth: Gauge,
    pub link_checks: Family<OutcomeLabel, Counter>,
    pub links_issued: Counter,
    pub background_errors: Family<TaskLabel, Counter>,
    pub garbage_failures: Counter,
    pub readiness_checks: Counter,
    pub events_pending: Family<SinkLabel, Gauge>,
    pub events_dead: Family<SinkLabel, Gauge>,
    pub events_delivered: Family<SinkLabel, Counter>,
    pub events_failed: Family<SinkLabel, Counter>,
    pub events_given_up: Family<SinkLabel, Counter>,
    pub event_delivery_seconds: Family<SinkLabel, Histogram>,
    pub rate_limit_checks: Family<LimitOutcome, Counter>,
    pub quota_refusals: Family<ScopeLabel, Counter>,
    pub connections_open: Gauge,
    pub connection_waits: Counter,
    pub connections_closed: Family<ReasonLabel, Counter>,
    pub tus_requests: Family<OutcomeLabel, Counter>,
    pub tus_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("satchel");
        let uploads = Family::<KindOutcome, Counter>::default();
        registry.register(
            "uploads",
            "Uploads by sniffed kind and outcome",
            uploads.clone(),
        );
        let upload_bytes = Counter::default();
        registry.register(
            "upload_bytes",
            "Bytes of accepted uploads",
            upload_bytes.clone(),
        );
        let jobs = Family::<KindOutcome, Counter>::default();
        registry.register("jobs", "Processing jobs by kind and outcome", jobs.clone());
        let job_seconds = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        registry.register("job_seconds", "Time to run one job", job_seconds.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Jobs waiting or running",
            queue_depth.clone(),
        );
        let link_checks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "link_checks",
            "Signed downloads by outcome",
            link_checks.clone(),
        );
        let links_issued = Counter::default();
        registry.register(
            "links_issued",
            "Download links issued",
            links_issued.clone(),
        );
        let background_errors = Family::<TaskLabel, Counter>::default();
        registry.register(
            "background_errors",
            "Failed steps of background tasks (each followed by a backoff)",
            background_errors.clone(),
        );
        let garbage_failures = Counter::default();
        registry.register(
            "garbage_failures",
            "Failed deletions of erased objects (each retried with its own backoff)",
            garbage_failures.clone(),
        );
        let readiness_checks = Counter::default();
        registry.register(
            "readiness_checks",
            "Rounds of backend checks behind /readyz (at most one a second)",
            readiness_checks.clone(),
        );
        let events_pending = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "events_pending",
            "Events in the outbox not yet delivered, by sink",
            events_pending.clone(),
        );
        let events_dead = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "events_dead",
            "Event deliveries given up on and kept for POST /v1/events/dead/retry, by sink",
            events_dead.clone(),
        );
        let events_delivered = Family::<SinkLabel, Counter>::default();
        registry.register(
            "events_delivered",
            "Events delivered (a broker confirm, a webhook 2xx) by this process, by sink",
            events_delivered.clone(),
        );
        let events_failed = Family::<SinkLabel, Counter>::default();
        registry.register(
            "events_failed",
            "Failed event delivery attempts (each retried or given up), by sink",
            events_failed.clone(),
        );
        let events_given_up = Family::<SinkLabel, Counter>::default();
        registry.register(
            "events_given_up",
            "Event deliveries marked dead by this process, by sink",
            events_given_up.clone(),
        );
        let event_delivery_seconds = Family::<SinkLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 16))
        });
        registry.register(
            "event_delivery_seconds",
            "From the change's commit to the sink's confirm, by sink",
            event_delivery_seconds.clone(),
        );
        let rate_limit_checks = Family::<LimitOutcome, Counter>::default();
        registry.register(
            "rate_limit_checks",
            "Rate-limit and in-flight checks by limit and outcome (allowed, limited, error)",
            rate_limit_checks.clone(),
        );
        let quota_refusals = Family::<ScopeLabel, Counter>::default();
        registry.register(
            "quota_refusals",
            "Uploads refused for a storage quota, by scope (chat or user)",
            quota_refusals.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now (at most max_connections)",
            connections_open.clone(),
        );
        let connection_waits = Counter::default();
        registry.register(
            "connection_waits",
            "Times accepting waited for a slot because max_connections were open",
            connection_waits.clone(),
        );
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections closed by a slow-client limit, by reason (header_timeout, \
             download_stall)",
            connections_closed.clone(),
        );
        let tus_requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "tus",
            "Resumable-upload steps by outcome (created, appended, completed, expired, \
             terminated, and each refusal's code)",
            tus_requests.clone(),
        );
        let tus_bytes = Counter::default();
        registry.register(
            "tus_bytes",
            "Bytes appended to resumable uploads (recorded)",
            tus_bytes.clone(),
        );
        Self {
            registry,
            uploads,
            upload_bytes,
            jobs,
            job_seconds,
            queue_depth,
            link_checks,
            links_issued,
            background_errors,
            garbage_failures,
            readiness_checks,
            events_pending,
            events_dead,
            events_delivered,
            events_failed,
            events_given_up,
            event_delivery_seconds,
            rate_limit_checks,
            quota_refusals,
            connections_open,
            connection_waits,
            connections_closed,
            tus_requests,
            tus_bytes,
        }
    }
}

impl Metrics {
    pub fn tus(&self, outcome: &str) {
        self.tus_requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn upload(&self, kind: &str, outcome: &str) {
        self.uploads
            .get_or_create(&KindOutcome {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// An upload refused for the quota of `scope` (also counted in `uploads`).
    pub fn quota_refused(&self, kind: &str, scope: crate::catalog::QuotaScope) {
        self.quota_refusals
            .get_or_create(&ScopeLabel {
                scope: scope.as_str().into(),
            })
            .inc();
        self.upload(kind, "quota_exceeded");
    }

    pub fn job(&self, kind: &str, outcome: &str, seconds: f64) {
        self.jobs
            .get_or_create(&KindOutcome {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.job_seconds
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(seconds);
    }

    /// A connection closed by a slow-client limit: `header_timeout` or `download_stall`.
    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn link_check(&self, outcome: &str) {
        self.link_checks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn event_delivered(&self, sink: &str, latency_seconds: f64) {
        let label = SinkLabel { sink: sink.into() };
        self.events_delivered.get_or_create(&label).inc();
        self.event_delivery_seconds
            .get_or_create(&label)
            .observe(latency_seconds);
    }

    /// A failed attempt; `given_up` when it made the delivery dead.
    pub fn event_failed(&self, sink: &str, given_up: bool) {
        let label = SinkLabel { sink: sink.into() };
        self.events_failed.get_or_create(&label).inc();
        if given_up {
            self.events_given_up.get_or_create(&label).inc();
        }
    }

    /// The outbox as the catalog counts it now, for every sink (0 where it has no rows).
    pub fn event_counts(&self, counts: &crate::catalog::EventCounts) {
        for sink in crate::domain::Sink::ALL {
            let label = SinkLabel {
                sink: sink.as_str().into(),
            };
            let of = |list: &[(crate::domain::Sink, u64)]| {
                list.iter().find(|(s, _)| *s == sink).map_or(0, |(_, n)| *n)
            };
            self.events_pending
                .get_or_create(&label)
                .set(of(&counts.pending) as i64);
            self.events_dead
                .get_or_create(&label)
                .set(of(&counts.dead) as i64);
        }
    }

    pub fn rate_limit_check(&self, limit: &str, outcome: &str) {
        self.rate_limit_checks
            .get_or_create(&LimitOutcome {
                limit: limit.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn background_error(&self, task: &str) {
        self.background_errors
            .get_or_create(&TaskLabel { task: task.into() })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
