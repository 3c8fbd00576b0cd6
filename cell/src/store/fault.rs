//! A store wrapper that injects faults from a seed, for tests: transient errors, commits whose
//! outcome is unknown (applied or not, at random), and delays. The same seed gives the same faults
//! for the same sequence of calls, so a failing run can be replayed from the seed it prints.

use super::{KeyValue, PendingCommit, Store, StoreError, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each fault happens, per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultConfig {
    /// Probability that a read or a commit fails with `Unavailable` (nothing applied).
    pub error_probability: f64,
    /// Probability that a commit answers `CommitUnknownResult`; half of those were applied.
    pub unknown_result_probability: f64,
    /// Each commit is delayed by up to this long.
    pub commit_delay_max: Duration,
    /// A `set` of a key that contains these bytes panics: a stand-in for a bug in the code that
    /// writes it, so tests can show that a panic costs only the operation that hit it.
    pub panic_on_key: Option<&'static [u8]>,
}

/// What was injected, for a test's report.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub errors: AtomicU64,
    pub unknown_applied: AtomicU64,
    pub unknown_dropped: AtomicU64,
}

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    config: FaultConfig,
    rng: Arc<Mutex<StdRng>>,
    counts: Arc<FaultCounts>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>, config: FaultConfig, seed: u64) -> FaultyStore {
        FaultyStore {
            inner,
            config,
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            counts: Arc::new(FaultCounts::default()),
        }
    }

    pub fn counts(&self) -> &FaultCounts {
        &self.counts
    }
}

impl Store for FaultyStore {
    fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        self.wrap(self.inner.begin()?)
    }

    fn begin_snapshot_reads(&self) -> Result<Box<dyn Transaction>, StoreError> {
        self.wrap(self.inner.begin_snapshot_reads()?)
    }
}

impl FaultyStore {
    fn wrap(&self, inner: Box<dyn Transaction>) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(FaultyTx { inner, config: self.config, rng: self.rng.clone(), counts: self.counts.clone() }))
    }
}

struct FaultyTx {
    inner: Box<dyn Transaction>,
    config: FaultConfig,
    rng: Arc<Mutex<StdRng>>,
    counts: Arc<FaultCounts>,
}

impl FaultyTx {
    fn roll(&self, probability: f64) -> bool {
        probability > 0.0 && self.rng.lock().unwrap_or_else(|p| p.into_inner()).random_bool(probability.min(1.0))
    }

    fn maybe_error(&self) -> Result<(), StoreError> {
        if self.roll(self.config.error_probability) {
            self.counts.errors.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable("injected fault".into()));
        }
        Ok(())
    }
}

impl Transaction for FaultyTx {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.maybe_error()?;
        self.inner.get(key)
    }

    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.maybe_error()?;
        self.inner.get_range(begin, end, limit, reverse)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if let Some(poison) = self.config.panic_on_key {
            if key.windows(poison.len()).any(|w| w == poison) {
                panic!("injected panic: a write of key {}", String::from_utf8_lossy(key));
            }
        }
        self.inner.set(key, value)
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.clear(key)
    }

    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        self.inner.atomic_add(key, delta)
    }

    fn set_versionstamped_key(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.set_versionstamped_key(key, value)
    }

    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, StoreError> {
        if !self.config.commit_delay_max.is_zero() {
            let nanos = self.config.commit_delay_max.as_nanos() as u64;
            let delay = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random_range(0..=nanos);
            std::thread::sleep(Duration::from_nanos(delay));
        }
        self.maybe_error()?;
        if self.roll(self.config.unknown_result_probability) {
            if self.roll(0.5) {
                self.inner.commit()?;
                self.counts.unknown_applied.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counts.unknown_dropped.fetch_add(1, Ordering::Relaxed);
            }
            return Err(StoreError::CommitUnknownResult);
        }
        self.inner.commit_pipelined()
    }
}
