//! Where the TATs live: in this process, or in Redis for every node at once. Both run
//! [`gcra`](super::rate::gcra): the Redis script is the same steps in Lua, on the server's
//! clock, in one atomic call.

use super::rate::{gcra, Decision, Rate};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A Redis call (connect included) that takes longer than this has failed: a check never
/// holds a request up for longer.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed connect, the next attempt waits this long (checks meanwhile fail at once).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// The in-process map is swept of keys back at full burst when it grows past this.
const SWEEP_ABOVE: usize = 10_000;

pub enum Store {
    Local(Local),
    Redis(RedisStore),
}

impl Store {
    /// Checks `cost` units of `rate` for `key`. `force`: count them even if over the limit
    /// (for what was already spent, e.g. an upload's size once known).
    pub async fn check(
        &self,
        key: &str,
        rate: &Rate,
        cost: u64,
        force: bool,
    ) -> anyhow::Result<Decision> {
        match self {
            Store::Local(local) => Ok(local.check(key, rate, cost, force)),
            Store::Redis(redis) => redis.check(key, rate, cost, force).await,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Store::Local(_) => "in-process",
            Store::Redis(_) => "redis",
        }
    }
}

/// TATs in a map, as ms since the process's first check.
pub struct Local {
    epoch: Instant,
    tats: Mutex<HashMap<String, f64>>,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            tats: Mutex::new(HashMap::new()),
        }
    }
}

impl Local {
    fn check(&self, key: &str, rate: &Rate, cost: u64, force: bool) -> Decision {
        let now = self.epoch.elapsed().as_secs_f64() * 1000.0;
        let mut tats = self.tats.lock().expect("not poisoned");
        let (decision, mut tat) = gcra(tats.get(key).copied(), now, rate, cost);
        if force && !decision.allowed {
            tat = tat.max(now) + rate.interval_ms() * cost as f64;
        }
        if tats.len() >= SWEEP_ABOVE && !tats.contains_key(key) {
            // A key whose TAT has passed is at full burst: forgetting it changes nothing.
            tats.retain(|_, t| *t > now);
        }
        tats.insert(key.to_owned(), tat);
        decision
    }
}

/// One `EVALSHA` per check: GCRA on the server's clock (`TIME`), the TAT kept with an expiry
/// at the moment the key would be back at full burst.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local force = ARGV[4] == '1'
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
local allowed = (allow_at - now) <= 0.000001
local kept = tat
if allowed or force then kept = new_tat end
if kept > now then
  redis.call('SET', KEYS[1], string.format('%.3f', kept), 'PX', math.ceil(kept - now))
end
local left_of = allowed and new_tat or tat
local remaining = math.floor((tolerance - (left_of - now)) / interval)
if remaining < 0 then remaining = 0 end
local retry = 0
if not allowed then retry = math.ceil(allow_at - now) end
return {allowed and 1 or 0, retry, remaining, math.ceil(left_of - now)}
"#;

pub struct RedisStore {
    client: redis::Client,
    /// Prepended to every key, so deployments can share a server.
    prefix: String,
    script: redis::Script,
    link: tokio::sync::Mutex<Link>,
    /// Whether the last call failed: the outage is logged once, at its start and its end.
    down: AtomicBool,
}

#[derive(Default)]
struct Link {
    connection: Option<redis::aio::ConnectionManager>,
    last_attempt: Option<Instant>,
}

impl RedisStore {
    /// Connects lazily: an unreachable server at start-up is an outage like any other.
    pub fn new(url: &str, prefix: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: format!("{prefix}:rl:"),
            script: redis::Script::new(SCRIPT),
            link: Default::default(),
            down: AtomicBool::new(false),
        })
    }

    async fn connection(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        let mut link = self.link.lock().await;
        if let Some(c) = &link.connection {
            return Ok(c.clone());
        }
        if link
            .last_attempt
            .is_some_and(|at| at.elapsed() < RECONNECT_EVERY)
        {
            anyhow::bail!("Redis is unreachable (next attempt within {RECONNECT_EVERY:?})");
        }
        link.last_attempt = Some(Instant::now());
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let connection = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::aio::ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to Redis timed out after {REDIS_TIMEOUT:?}"))??;
        link.connection = Some(connection.clone());
        Ok(connection)
    }

    async fn call(
        &self,
        key: &str,
        rate: &Rate,
        cost: u64,
        force: bool,
    ) -> anyhow::Result<Decision> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation
            .arg(rate.interval_ms())
            .arg(rate.tolerance_ms())
            .arg(cost)
            .arg(if force { "1" } else { "0" });
        let (allowed, retry, remaining, reset): (i64, i64, i64, i64) =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| anyhow::anyhow!("Redis did not answer within {REDIS_TIMEOUT:?}"))??;
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        Ok(Decision {
            allowed: allowed == 1,
            retry_after: ms(retry),
            remaining: remaining.max(0) as u64,
            reset: ms(reset),
        })
    }

    async fn check(
        &self,
        key: &str,
        rate: &Rate,
        cost: u64,
        force: bool,
    ) -> anyhow::Result<Decision> {
        let result = self.call(key, rate, cost, force).await;
        match (&result, self.down.load(Ordering::Relaxed)) {
            (Err(e), false) => {
                self.down.store(true, Ordering::Relaxed);
                tracing::warn!(
                    error = format!("{e:#}"),
                    "rate limits: Redis is unreachable"
                );
            }
            (Ok(_), true) => {
                self.down.store(false, Ordering::Relaxed);
                tracing::info!("rate limits: Redis answers again");
            }
            _ => {}
        }
        result
    }
}
