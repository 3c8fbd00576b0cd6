//! Failed logins, counted per player and per address over a sliding window: past the limit, a
//! login is refused before its password is even checked, until the oldest failure in the window
//! ages out.

use replication::throttle::FailureWindow;

/// The window failures are counted in.
pub const FAILURE_WINDOW_SECONDS: i64 = 15 * 60;
/// Failed logins of one player within the window before their logins are refused.
pub const PLAYER_FAILURES_MAX: usize = 5;
/// Failed logins from one address within the window before its logins are refused.
pub const ADDRESS_FAILURES_MAX: usize = 20;

pub struct Throttle {
    players: FailureWindow,
    addresses: FailureWindow,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            players: FailureWindow::new(PLAYER_FAILURES_MAX, FAILURE_WINDOW_SECONDS),
            addresses: FailureWindow::new(ADDRESS_FAILURES_MAX, FAILURE_WINDOW_SECONDS),
        }
    }
}

impl Throttle {
    /// Seconds to wait, when the player or the address has failed too often.
    pub fn refused(&mut self, player: &str, address: Option<&str>, now: i64) -> Option<u64> {
        let by_player = self.players.refused(player, now);
        let by_address = address.and_then(|a| self.addresses.refused(a, now));
        by_player.max(by_address)
    }

    pub fn failed(&mut self, player: &str, address: Option<&str>, now: i64) {
        self.players.failed(player, now);
        if let Some(address) = address {
            self.addresses.failed(address, now);
        }
    }

    /// A successful login clears the player's failures (not the address's).
    pub fn succeeded(&mut self, player: &str) {
        self.players.clear(player);
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
