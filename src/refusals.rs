//! How refused logins reach the audit log without letting a flood fill it: a refusal that
//! starts a ban is always recorded; attempts from banned addresses, locked accounts and throttled
//! ones are only counted; other refusals are recorded one by one up to a global rate
//! (`limits.refused_login_records_per_sec`) and counted beyond it. What was counted goes into one
//! summary record per interval ([`RefusalLog::take_summary`]). Names tried are capped.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::identity::AuthError;

/// Longest user name written into a record, in bytes.
pub const MAX_RECORDED_NAME: usize = 256;
/// Addresses named one by one in a summary (the rest are only counted).
const SUMMARY_ADDRESSES: usize = 10;

#[derive(Debug, Default)]
struct Counted {
    /// Per address label: attempts refused without a record.
    by_addr: HashMap<String, u64>,
    /// Of those, refusals over the record budget (the rest were banned, locked or throttled).
    over_budget: u64,
}

/// The record budget and the counts waiting for the next summary.
#[derive(Debug)]
pub struct RefusalLog {
    budget: Option<DefaultDirectRateLimiter>,
    counted: Mutex<Counted>,
}

impl RefusalLog {
    /// A log that records at most `per_sec` ordinary refusals per second (0: no limit).
    pub fn new(per_sec: u32) -> Self {
        let budget = NonZeroU32::new(per_sec).map(|n| {
            let burst = n.saturating_mul(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN));
            RateLimiter::direct(Quota::per_second(n).allow_burst(burst))
        });
        Self {
            budget,
            counted: Mutex::new(Counted::default()),
        }
    }

    /// Whether a refusal gets a record of its own (`starts_ban`: it started a ban or lock, which
    /// is always recorded). When not, it is counted under `addr` for the next summary.
    pub fn admit(&self, error: AuthError, starts_ban: bool, addr: &str) -> bool {
        if starts_ban {
            return true;
        }
        let throttled = error.is_throttle();
        if !throttled && self.budget.as_ref().is_none_or(|b| b.check().is_ok()) {
            return true;
        }
        let mut c = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        if !c.by_addr.contains_key(addr) && c.by_addr.len() >= 100_000 {
            // Bounded: past this many addresses, the rest are counted under one key.
            *c.by_addr.entry("other addresses".into()).or_default() += 1;
        } else {
            *c.by_addr.entry(addr.to_string()).or_default() += 1;
        }
        if !throttled {
            c.over_budget += 1;
        }
        false
    }

    /// The summary of everything counted since the last call, if anything was.
    pub fn take_summary(&self, interval_secs: u64) -> Option<String> {
        let c = std::mem::take(&mut *self.counted.lock().unwrap_or_else(|e| e.into_inner()));
        let total: u64 = c.by_addr.values().sum();
        if total == 0 {
            return None;
        }
        let mut top: Vec<(String, u64)> = c.by_addr.into_iter().collect();
        let addresses = top.len();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let named: Vec<String> = top
            .iter()
            .take(SUMMARY_ADDRESSES)
            .map(|(a, n)| format!("{a} x{n}"))
            .collect();
        Some(format!(
            "{total} refused logins not recorded one by one in the last {interval_secs} s \
             ({} from banned, locked or throttled sources, {} over the record budget) from \
             {addresses} addresses: {}",
            total - c.over_budget,
            c.over_budget,
            named.join(", ")
        ))
    }
}

/// A name tried, capped at [`MAX_RECORDED_NAME`] bytes (on a character boundary); the second
/// value is the original length when it was cut.
pub fn capped_name(name: &str) -> (String, Option<usize>) {
    if name.len() <= MAX_RECORDED_NAME {
        return (name.to_string(), None);
    }
    let mut end = MAX_RECORDED_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    (name[..end].to_string(), Some(name.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_are_counted_and_summarised() {
        let log = RefusalLog::new(1000);
        assert!(log.admit(AuthError::BadPassword, true, "10.0.0.1"));
        for _ in 0..5 {
            assert!(!log.admit(AuthError::Banned, false, "10.0.0.1"));
        }
        assert!(!log.admit(AuthError::Banned, false, "10.0.0.2"));
        let s = log.take_summary(60).unwrap();
        assert!(s.starts_with("6 refused logins"), "{s}");
        assert!(
            s.contains("10.0.0.1 x5") && s.contains("2 addresses"),
            "{s}"
        );
        assert!(log.take_summary(60).is_none());
    }

    #[test]
    fn the_budget_caps_ordinary_refusals() {
        let log = RefusalLog::new(1);
        let admitted = (0..100)
            .filter(|_| log.admit(AuthError::BadPassword, false, "10.0.0.1"))
            .count();
        assert_eq!(admitted, 10, "a burst of ten, then counted");
        assert!(
            log.take_summary(60)
                .unwrap()
                .contains("90 over the record budget")
        );
    }

    #[test]
    fn names_are_capped_on_char_boundaries() {
        assert_eq!(capped_name("acme"), ("acme".into(), None));
        let long = "é".repeat(200);
        let (cut, orig) = capped_name(&long);
        assert!(cut.len() <= MAX_RECORDED_NAME && cut.len() >= MAX_RECORDED_NAME - 1);
        assert_eq!(orig, Some(400));
    }
}
