//! A writer's lease: what keeps two writers of one jurisdiction from ever committing side by side,
//! even cut apart by a partition (docs/replication.md).
//!
//! A replicated primary commits only while a party that could make another writer has confirmed
//! its epoch within [`LEASE`]: its standby (answering the shipper's heartbeat) or global-control
//! (the arbiter, which records the writer's epoch per cell). A confirmation counts from when the
//! primary *asked* for it, on the primary's own monotonic clock, so the lease it gives runs out no
//! later than [`LEASE`] after the confirming party last answered. A promoted standby was stopped
//! (it confirms nothing more) and has global-control record its new epoch (which then confirms the
//! old one no more) before it waits [`LEASE`] and writes: by then the old writer's lease has run
//! out, wherever it is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one confirmation lets a primary write.
pub const LEASE: Duration = Duration::from_secs(5);

/// How often a primary asks global-control to confirm it (the standby confirms each heartbeat).
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// A primary's lease, on this process's monotonic clock (milliseconds since it was made).
#[derive(Debug)]
pub struct Lease {
    origin: Instant,
    /// When the latest confirmation was asked for, plus one (0: never confirmed).
    asked: AtomicU64,
    /// Writes wait for a lease only once required (a replicated primary with an arbiter).
    required: AtomicBool,
    /// No confirmation counts before this (a freshly promoted writer waits out its predecessor's).
    not_before: AtomicU64,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            origin: Instant::now(),
            asked: AtomicU64::new(0),
            required: AtomicBool::new(false),
            not_before: AtomicU64::new(0),
        }
    }
}

impl Lease {
    /// Milliseconds on this lease's clock: what a request for a confirmation carries.
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A party confirmed the epoch in answer to a request made at `asked` (from [`Lease::now`]).
    pub fn confirmed(&self, asked: u64) {
        if asked >= self.not_before.load(Ordering::Acquire) {
            self.asked.fetch_max(asked.saturating_add(1), Ordering::AcqRel);
        }
    }

    /// From now on, writes need a lease.
    pub fn require(&self) {
        self.required.store(true, Ordering::Release);
    }

    pub fn required(&self) -> bool {
        self.required.load(Ordering::Acquire)
    }

    /// Counts no confirmation asked for before `wait` from now: a writer just promoted lets its
    /// predecessor's last lease run out first.
    pub fn wait_out(&self, wait: Duration) {
        let until = self.now().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        self.not_before.fetch_max(until, Ordering::AcqRel);
    }

    /// What is left of the lease: `None` when none is required, zero when it ran out.
    pub fn remaining(&self) -> Option<Duration> {
        if !self.required() {
            return None;
        }
        let asked = self.asked.load(Ordering::Acquire);
        if asked == 0 {
            return Some(Duration::ZERO);
        }
        let until = (asked - 1).saturating_add(u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX));
        Some(Duration::from_millis(until.saturating_sub(self.now())))
    }

    /// Whether this process may commit now.
    pub fn holds(&self) -> bool {
        self.remaining().is_none_or(|left| !left.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_runs_from_when_it_was_asked_and_a_promoted_writer_waits_out_the_last() {
        let lease = Lease::default();
        assert!(lease.holds(), "none required yet");
        lease.require();
        assert!(!lease.holds(), "required, never confirmed");
        lease.confirmed(lease.now());
        let left = lease.remaining().unwrap();
        assert!(lease.holds() && left <= LEASE && left > LEASE - Duration::from_secs(1));
        // A confirmation asked for long ago gives what is left of it, not a fresh lease.
        let fresh = Lease::default();
        fresh.require();
        std::thread::sleep(Duration::from_millis(30));
        fresh.confirmed(0);
        assert!(fresh.remaining().unwrap() <= LEASE - Duration::from_millis(30));
        // Waiting out: confirmations asked for before the wait ends do not count.
        let promoted = Lease::default();
        promoted.require();
        promoted.wait_out(Duration::from_secs(60));
        promoted.confirmed(promoted.now());
        assert!(!promoted.holds());
    }
}
