//! Failed logins, counted per player and per address over a sliding window: past the limit, a
//! login is refused before its password is even checked, until the oldest failure in the window
//! ages out. Kept in memory: a restart forgets them, which costs an attacker a restart of ours.

use std::collections::{HashMap, VecDeque};

/// The window failures are counted in.
pub const FAILURE_WINDOW_SECONDS: i64 = 15 * 60;
/// Failed logins of one player within the window before their logins are refused.
pub const PLAYER_FAILURES_MAX: usize = 5;
/// Failed logins from one address within the window before its logins are refused.
pub const ADDRESS_FAILURES_MAX: usize = 20;
/// Players and addresses tracked at once: past it the oldest-looking half is dropped, so a flood
/// of made-up ids cannot grow the map without bound.
const TRACKED_MAX: usize = 100_000;

#[derive(Default)]
pub struct Throttle {
    players: HashMap<String, VecDeque<i64>>,
    addresses: HashMap<String, VecDeque<i64>>,
}

/// Failures within the window before `now`, oldest first, with the stale ones dropped.
fn recent(failures: &mut VecDeque<i64>, now: i64) -> &VecDeque<i64> {
    while failures.front().is_some_and(|&at| at <= now - FAILURE_WINDOW_SECONDS) {
        failures.pop_front();
    }
    failures
}

/// Seconds until a login is allowed again, if `failures` has reached `max`.
fn wait(failures: Option<&mut VecDeque<i64>>, max: usize, now: i64) -> Option<u64> {
    let failures = recent(failures?, now);
    if failures.len() < max {
        return None;
    }
    let oldest = failures[failures.len() - max];
    Some(u64::try_from(oldest + FAILURE_WINDOW_SECONDS - now).unwrap_or(0).max(1))
}

fn record(map: &mut HashMap<String, VecDeque<i64>>, key: &str, now: i64) {
    if map.len() >= TRACKED_MAX && !map.contains_key(key) {
        map.retain(|_, failures| !recent(failures, now).is_empty());
        if map.len() >= TRACKED_MAX {
            map.clear();
        }
    }
    map.entry(key.to_owned()).or_default().push_back(now);
}

impl Throttle {
    /// Seconds to wait, when the player or the address has failed too often.
    pub fn refused(&mut self, player: &str, address: Option<&str>, now: i64) -> Option<u64> {
        let by_player = wait(self.players.get_mut(player), PLAYER_FAILURES_MAX, now);
        let by_address = address.and_then(|a| wait(self.addresses.get_mut(a), ADDRESS_FAILURES_MAX, now));
        by_player.max(by_address)
    }

    pub fn failed(&mut self, player: &str, address: Option<&str>, now: i64) {
        record(&mut self.players, player, now);
        if let Some(address) = address {
            record(&mut self.addresses, address, now);
        }
    }

    /// A successful login clears the player's failures (not the address's).
    pub fn succeeded(&mut self, player: &str) {
        self.players.remove(player);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_of_a_player_or_twenty_from_an_address_refuse_until_the_window_passes() {
        let mut t = Throttle::default();
        for i in 0..PLAYER_FAILURES_MAX as i64 {
            assert_eq!(t.refused("uk-ann", Some("10.0.0.1"), 1_000 + i), None);
            t.failed("uk-ann", Some("10.0.0.1"), 1_000 + i);
        }
        assert_eq!(t.refused("uk-ann", None, 1_010), Some(890), "until the first failure is 15 minutes old");
        assert_eq!(t.refused("uk-ann", None, 1_900), None);
        assert_eq!(t.refused("uk-bob", Some("10.0.0.1"), 1_010), None, "the address has failed 5 times of 20");
        for i in 0..15 {
            t.failed(&format!("uk-p{i}"), Some("10.0.0.1"), 1_100);
        }
        assert!(t.refused("uk-bob", Some("10.0.0.1"), 1_101).is_some(), "20 failures from one address");
        t.succeeded("uk-ann");
        assert_eq!(t.refused("uk-ann", None, 1_010), None, "a success clears the player's failures");
    }
}
