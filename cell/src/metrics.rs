//! Prometheus metrics of a cell, served at `/metrics` in the text exposition format.

use crate::store::DeletedFiles;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkListLabels {
    pub list: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WalletOpLabels {
    pub op: &'static str,
    pub outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub wallet_ops: Family<WalletOpLabels, Counter>,
    pub wallet_batch_ops: Histogram,
    /// One histogram per [`Stage`], made once so the hot path never looks a label up.
    wallet_stages: Vec<Histogram>,
    pub wallet_queue_depth: Gauge,
    /// Items on each of the cashier's work lists, as its sweeper last counted them.
    pub cashier_work: Family<WorkListLabels, Gauge>,
    /// The open store's deleted-file counts, once a store is open.
    deleted_files: Arc<DeletedFilesCollector>,
    replica: Arc<ReplicaCollector>,
}

/// Reads replication's lag, log, epoch and fence at each scrape, once the cell replicates.
#[derive(Default)]
struct ReplicaCollector(Mutex<Option<Arc<crate::replica::ReplicaState>>>);

impl std::fmt::Debug for ReplicaCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicaCollector")
    }
}

impl Collector for ReplicaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(state) = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(());
        };
        let (versions, seconds) = state.lag();
        let standbys = state.shipper.get().map_or(0, |s| s.sessions().len());
        if state.standby {
            let following = ConstGauge::new(i64::from(state.follow.borrow().connected));
            let help = "1 when this standby is connected to its primary (only a standby reports it)";
            following.encode(encoder.encode_descriptor(
                "replication_following",
                help,
                None,
                following.metric_type(),
            )?)?;
        }
        let gauges: [(&str, &str, i64); 5] = [
            (
                "replication_lag_versions",
                "Commits the standby is behind its primary (on a primary: its furthest standby)",
                versions as i64,
            ),
            (
                "replication_log_bytes",
                "Bytes of commits the primary keeps for its standbys",
                state.store.log_bytes() as i64,
            ),
            ("replication_standbys", "Standbys following this primary now", standbys as i64),
            ("epoch", "The epoch this cell writes under (promotion bumps it)", state.store.epoch() as i64),
            (
                "fenced",
                "1 when a peer with a higher epoch deposed this cell",
                i64::from(state.store.fenced_by().is_some()),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if let Some(left) = state.lease.remaining() {
            let lease = ConstGauge::new(left.as_secs_f64());
            let help = "Seconds left of this primary's lease (0: it writes nothing until its standby or the control plane confirms it)";
            lease.encode(encoder.encode_descriptor("replication_lease_seconds", help, None, lease.metric_type())?)?;
        }
        let lag = ConstGauge::new(if seconds.is_finite() { seconds } else { -1.0 });
        let help = "Seconds since the standby last held everything its primary had (-1: never yet)";
        lag.encode(encoder.encode_descriptor("replication_lag_seconds", help, None, lag.metric_type())?)?;
        Ok(())
    }
}

/// Reads the trickle delete's counts at each scrape, from whichever store is open.
#[derive(Debug, Default)]
struct DeletedFilesCollector(Mutex<Option<Arc<DeletedFiles>>>);

impl Collector for DeletedFilesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(files) = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(());
        };
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let counters = [
            (
                "store_deleted_freed_bytes",
                "Bytes of the store's deleted files freed a chunk at a time",
                read(&files.freed_bytes),
            ),
            (
                "store_deleted_let_go_at_once",
                "Deleted store files freed whole because too much was withheld",
                read(&files.let_go_at_once),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let gauges = [
            (
                "store_deleted_withheld_bytes",
                "Bytes of the store's deleted files not freed yet",
                read(&files.withheld_bytes),
            ),
            ("store_held_files", "Store files the trickle delete holds open", read(&files.held_files)),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// The stages of a command through the ledger writer's pipeline (`ledger::pipeline`).
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    /// Per operation: from submit until its batch starts.
    Queued,
    /// Per batch: applying it in the writer.
    Applied,
    /// Per batch: waiting for the commit thread.
    WaitedCommit,
    /// Per batch: committing it to the store.
    Committed,
    /// Per batch: waiting for the durability thread.
    WaitedSync,
    /// Per batch: waiting for the sync that makes it durable.
    Synced,
    /// Per operation: from submit until the caller has its answer.
    Answered,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Queued,
        Stage::Applied,
        Stage::WaitedCommit,
        Stage::Committed,
        Stage::WaitedSync,
        Stage::Synced,
        Stage::Answered,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Applied => "applied",
            Stage::WaitedCommit => "waited_commit",
            Stage::Committed => "committed",
            Stage::WaitedSync => "waited_sync",
            Stage::Synced => "synced",
            Stage::Answered => "answered",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

impl Metrics {
    /// Records the time a wallet operation or batch spent in `stage`, which began at `since`.
    pub fn wallet_stage(&self, stage: Stage, since: std::time::Instant) {
        self.wallet_stages[stage as usize].observe(since.elapsed().as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cell");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_seconds = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let wallet_ops = Family::<WalletOpLabels, Counter>::default();
        let wallet_batch_ops = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let wallet_stage_seconds = Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let wallet_stages = Stage::ALL
            .iter()
            .map(|s| wallet_stage_seconds.get_or_create(&StageLabels { stage: s.label() }).clone())
            .collect();
        let wallet_queue_depth = Gauge::default();
        let cashier_work = Family::<WorkListLabels, Gauge>::default();
        registry.register(
            "cashier_work_items",
            "Payments and notifications on each cashier work list, as the sweeper last counted them (at most 10,000 a list): parked (notifications about an unknown payment or a refused step), to_answer, to_confirm, to_capture, to_refund, to_pay_out (waiting on a PSP), to_review (withdrawals waiting for finance)",
            cashier_work.clone(),
        );
        registry.register("http_requests", "HTTP requests answered, by route and status", http_requests.clone());
        registry.register("http_request_seconds", "HTTP request latency, by route", http_seconds.clone());
        registry.register("wallet_operations", "Wallet operations, by kind and outcome", wallet_ops.clone());
        registry.register("wallet_batch_operations", "Operations per wallet store commit", wallet_batch_ops.clone());
        registry.register(
            "wallet_stage_seconds",
            "Wallet time by stage: queued (per operation, until its batch starts); applied, waited_commit, committed, waited_sync and synced (per batch); answered (per operation, submit to answer)",
            wallet_stage_seconds.clone(),
        );
        registry.register("wallet_queue_depth", "Commands waiting for the ledger writer", wallet_queue_depth.clone());
        let deleted_files = Arc::new(DeletedFilesCollector::default());
        registry.register_collector(Box::new(deleted_files.clone()));
        let replica = Arc::new(ReplicaCollector::default());
        registry.register_collector(Box::new(replica.clone()));
        Metrics {
            registry,
            http_requests,
            http_seconds,
            wallet_ops,
            wallet_batch_ops,
            wallet_stages,
            wallet_queue_depth,
            cashier_work,
            deleted_files,
            replica,
        }
    }
}

impl Metrics {
    /// Reports this replication state from now on.
    pub fn watch_replica(&self, state: Arc<crate::replica::ReplicaState>) {
        *self.replica.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    /// Reports `files` (the open store's) from now on.
    pub fn watch_deleted_files(&self, files: Arc<DeletedFiles>) {
        *self.deleted_files.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(files);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
