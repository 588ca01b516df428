//! Caps on uploads in flight on this node: per user and in all. Over a cap the upload is
//! refused at once (`429`), never queued.

use super::{Limited, Name};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct InFlight {
    per_user: Option<usize>,
    total: Option<usize>,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_user: HashMap<String, usize>,
}

/// One upload in flight; counted until dropped.
#[derive(Debug)]
pub struct Slot {
    user: String,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("not poisoned");
        counts.total -= 1;
        if let Some(n) = counts.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.by_user.remove(&self.user);
            }
        }
    }
}

impl InFlight {
    /// `None` for a cap that is off.
    pub fn new(per_user: Option<usize>, total: Option<usize>) -> Self {
        Self {
            per_user,
            total,
            counts: Default::default(),
        }
    }

    /// A slot for one more upload by `user`, or which cap it would break.
    pub fn enter(&self, user: &str) -> Result<Slot, Limited> {
        let mut counts = self.counts.lock().expect("not poisoned");
        let over = |name, cap: usize| Limited {
            name,
            quota: cap as u64,
            // A cap has no window; a second is when trying again makes sense.
            window: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            remaining: 0,
        };
        if let Some(cap) = self.total {
            if counts.total >= cap {
                return Err(over(Name::UploadsInFlight, cap));
            }
        }
        let mine = counts.by_user.get(user).copied().unwrap_or(0);
        if let Some(cap) = self.per_user {
            if mine >= cap {
                return Err(over(Name::UploadsInFlightPerUser, cap));
            }
        }
        counts.total += 1;
        *counts.by_user.entry(user.to_owned()).or_default() += 1;
        Ok(Slot {
            user: user.to_owned(),
            counts: self.counts.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_until_dropped() {
        let caps = InFlight::new(Some(2), Some(3));
        let a1 = caps.enter("a").unwrap();
        let _a2 = caps.enter("a").unwrap();
        assert_eq!(
            caps.enter("a").unwrap_err().name,
            Name::UploadsInFlightPerUser
        );
        let _b1 = caps.enter("b").unwrap();
        assert_eq!(caps.enter("c").unwrap_err().name, Name::UploadsInFlight);
        drop(a1);
        let _c1 = caps.enter("c").unwrap();
        assert!(InFlight::default().enter("x").is_ok());
    }
}
