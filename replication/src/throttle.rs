//! Failures counted per key (a player, an address) over a sliding window: once a key has failed
//! `max` times within the window, it is refused until its oldest failure there ages out. In
//! memory: a restart forgets, which costs an attacker a restart of ours.

use std::collections::{HashMap, VecDeque};

/// Keys tracked at once: past it the keys with no failure left in the window are dropped (and, if
/// that is not enough, all), so a flood of made-up keys cannot grow the map without bound.
const TRACKED_MAX: usize = 100_000;

pub struct FailureWindow {
    window_seconds: i64,
    max: usize,
    failures: HashMap<String, VecDeque<i64>>,
}

impl FailureWindow {
    pub fn new(max: usize, window_seconds: i64) -> FailureWindow {
        FailureWindow { window_seconds, max, failures: HashMap::new() }
    }

    fn recent(failures: &mut VecDeque<i64>, window: i64, now: i64) -> usize {
        while failures.front().is_some_and(|&at| at <= now - window) {
            failures.pop_front();
        }
        failures.len()
    }

    /// Seconds until `key` may try again (at least 1), if it has failed `max` times in the window.
    pub fn refused(&mut self, key: &str, now: i64) -> Option<u64> {
        let failures = self.failures.get_mut(key)?;
        if Self::recent(failures, self.window_seconds, now) < self.max {
            return None;
        }
        let oldest = failures[failures.len() - self.max];
        Some(u64::try_from(oldest + self.window_seconds - now).unwrap_or(0).max(1))
    }

    pub fn failed(&mut self, key: &str, now: i64) {
        if self.failures.len() >= TRACKED_MAX && !self.failures.contains_key(key) {
            let window = self.window_seconds;
            self.failures.retain(|_, f| Self::recent(f, window, now) > 0);
            if self.failures.len() >= TRACKED_MAX {
                self.failures.clear();
            }
        }
        self.failures.entry(key.to_owned()).or_default().push_back(now);
    }

    /// Forgets `key`'s failures (a success).
    pub fn clear(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_after_max_failures_until_the_oldest_ages_out() {
        let mut w = FailureWindow::new(3, 60);
        for at in [100, 101, 102] {
            assert_eq!(w.refused("a", at), None);
            w.failed("a", at);
        }
        assert_eq!(w.refused("a", 110), Some(50));
        assert_eq!(w.refused("b", 110), None, "keys are counted apart");
        assert_eq!(w.refused("a", 160), None, "the first failure aged out");
        w.clear("a");
        assert_eq!(w.refused("a", 110), None);
    }
}
