//! A rate as configured (`"30/60s"`: 30 at once, then one every 2 s) and the one algorithm
//! every store runs on it: GCRA (the generic cell rate algorithm), a token bucket kept as a
//! single number per key, the theoretical arrival time (TAT) of the next request.

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `count` per `period`: a burst of `count`, then `count / period` steadily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period: Duration,
}

impl Rate {
    /// The time one unit costs, in ms: the steady rate's spacing.
    pub fn interval_ms(&self) -> f64 {
        self.period.as_millis() as f64 / self.count as f64
    }

    /// How far ahead of now the TAT may run, in ms: the burst.
    pub fn tolerance_ms(&self) -> f64 {
        self.period.as_millis() as f64
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `<count>/<period>`: the period a whole number with `ms`, `s`, `m`, `h` or `d`, or the
    /// unit alone (`"10/s"`).
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not <count>/<period>, e.g. \"30/60s\"");
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let digits = period.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = period.split_at(digits);
        let n: u64 = match n {
            "" => 1,
            n => n.parse().map_err(|_| bad())?,
        };
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        if count == 0 || n == 0 {
            return Err(bad());
        }
        let period = Duration::from_millis(n.checked_mul(unit_ms).ok_or_else(bad)?);
        Ok(Rate { count, period })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}ms", self.count, self.period.as_millis())
    }
}

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// When refused: how long until the same request would pass, exactly.
    pub retry_after: Duration,
    /// Units left in the burst after this check.
    pub remaining: u64,
    /// How long until the bucket is full again.
    pub reset: Duration,
}

/// How late (ms) a request may be and still count as on time: rounding, nothing more.
pub const EPSILON_MS: f64 = 1e-6;

/// One GCRA step at `now` (ms) for a key whose TAT is `tat` (ms; `None`: never seen), for a
/// request of `cost` units. Returns the decision and the TAT to keep (unchanged when
/// refused). The Redis script (`store.rs`) is this function in Lua.
pub fn gcra(tat: Option<f64>, now: f64, rate: &Rate, cost: u64) -> (Decision, f64) {
    let interval = rate.interval_ms();
    let tolerance = rate.tolerance_ms();
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval * cost as f64;
    let allow_at = new_tat - tolerance;
    let ms = |v: f64| Duration::from_millis(v.max(0.0).ceil() as u64);
    let left = |tat: f64| ((tolerance - (tat - now)) / interval).floor().max(0.0) as u64;
    // Within a nanosecond counts as on time: `tat + cost·interval - tolerance` is `now` in exact
    // arithmetic for a fresh key, but not always in floating point.
    if allow_at - now > EPSILON_MS {
        let decision = Decision {
            allowed: false,
            retry_after: ms(allow_at - now),
            remaining: left(tat),
            reset: ms(tat - now),
        };
        return (decision, tat);
    }
    let decision = Decision {
        allowed: true,
        retry_after: Duration::ZERO,
        remaining: left(new_tat),
        reset: ms(new_tat - now),
    };
    (decision, new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_count_per_period() {
        let rate: Rate = "30/60s".parse().unwrap();
        assert_eq!((rate.count, rate.period), (30, Duration::from_secs(60)));
        assert_eq!(
            "500/1h".parse::<Rate>().unwrap().period,
            Duration::from_secs(3600)
        );
        assert_eq!(
            "10/s".parse::<Rate>().unwrap().period,
            Duration::from_secs(1)
        );
        for bad in ["", "30", "0/1s", "30/0s", "30/1y", "x/1s", "30/s1", "-1/1s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_burst_passes_then_the_steady_rate_with_an_exact_retry_after() {
        let rate: Rate = "3/60s".parse().unwrap(); // one every 20 s
        let mut tat = None;
        let mut step = |now: f64| {
            let (d, t) = gcra(tat, now, &rate, 1);
            tat = Some(t);
            d
        };
        for left in [2, 1, 0] {
            let d = step(0.0);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let refused = step(0.0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        assert!(!step(19_999.0).allowed);
        assert!(step(20_000.0).allowed);
        assert!(!step(20_000.0).allowed);
        // Idle long enough, the whole burst is back.
        for _ in 0..3 {
            assert!(step(200_000.0).allowed);
        }
    }

    #[test]
    fn a_fresh_key_passes_whatever_the_rounding() {
        let rate: Rate = "1/60s".parse().unwrap();
        for now in [0.0, 0.1, 123_456.789, 1e12 + 0.3] {
            assert!(gcra(None, now, &rate, 1).0.allowed, "{now}");
        }
    }

    #[test]
    fn a_cost_larger_than_the_burst_never_passes_and_costs_nothing() {
        let rate: Rate = "100/1s".parse().unwrap();
        let (d, tat) = gcra(None, 0.0, &rate, 101);
        assert!(!d.allowed);
        assert_eq!(tat, 0.0);
        let (d, _) = gcra(Some(tat), 0.0, &rate, 100);
        assert!(d.allowed);
    }
}
