//! Log shipping over real QUIC with mutual TLS on loopback, between an in-memory primary and
//! standby: following, resuming, a snapshot when the log no longer reaches back, data residency,
//! and epochs (a deposed primary is fenced; two primaries at one epoch both stop).

use replication::shipping::{
    check_writer, follow, Commit, FollowConfig, FollowStatus, LogSink, LogSource, Pairs, Shipper, ShipperConfig,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The version, the key-value map, and the log of `key=value` commits by version.
type MemState = (u64, BTreeMap<Vec<u8>, Vec<u8>>, BTreeMap<u64, Vec<u8>>);

/// A store in memory.
struct Mem {
    data: Mutex<MemState>,
    commits: watch::Sender<u64>,
    epoch: AtomicU64,
    fenced_by: AtomicU64,
}

impl Mem {
    fn new(epoch: u64) -> Arc<Mem> {
        Arc::new(Mem {
            data: Mutex::new((0, BTreeMap::new(), BTreeMap::new())),
            commits: watch::channel(0).0,
            epoch: epoch.into(),
            fenced_by: 0.into(),
        })
    }

    /// Commits `key=value` as the primary does.
    fn commit(&self, key: &str, value: &str) {
        let mut d = self.data.lock().unwrap();
        d.0 += 1;
        let version = d.0;
        d.1.insert(key.as_bytes().to_vec(), value.as_bytes().to_vec());
        d.2.insert(version, format!("{key}={value}").into_bytes());
        drop(d);
        self.commits.send_replace(version);
    }

    fn trim_to_last(&self, n: usize) {
        let mut d = self.data.lock().unwrap();
        while d.2.len() > n {
            let first = *d.2.keys().next().unwrap();
            d.2.remove(&first);
        }
    }

    fn state(&self) -> (u64, BTreeMap<Vec<u8>, Vec<u8>>) {
        let d = self.data.lock().unwrap();
        (d.0, d.1.clone())
    }
}

impl LogSource for Mem {
    fn committed_version(&self) -> u64 {
        self.data.lock().unwrap().0
    }
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
    fn oldest_logged(&self) -> Result<Option<u64>, String> {
        Ok(self.data.lock().unwrap().2.keys().next().copied())
    }
    fn logged_after(&self, version: u64, _max_bytes: usize) -> Result<Vec<Commit>, String> {
        let d = self.data.lock().unwrap();
        let commit = |(v, w): (&u64, &Vec<u8>)| Commit { version: *v, writes: w.clone(), chain_head: None };
        Ok(d.2.range(version + 1..).map(commit).collect())
    }
    fn snapshot(&self, _chunk: usize, f: &mut dyn FnMut(u64, Pairs) -> Result<(), String>) -> Result<u64, String> {
        let (version, data) = self.state();
        let pairs: Pairs = data.into_iter().collect();
        // Two chunks, to exercise the chunking.
        let (a, b) = pairs.split_at(pairs.len() / 2);
        f(version, a.to_vec())?;
        f(version, b.to_vec())?;
        Ok(version)
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }
    fn fence(&self, peer_epoch: u64) {
        self.fenced_by.store(peer_epoch, Ordering::SeqCst);
    }
}

impl LogSink for Mem {
    fn applied_version(&self) -> Result<u64, String> {
        Ok(self.data.lock().unwrap().0)
    }
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }
    fn apply(&self, commit: &Commit) -> Result<(), String> {
        let version = commit.version;
        let text = String::from_utf8(commit.writes.clone()).map_err(|e| e.to_string())?;
        let (k, v) = text.split_once('=').ok_or("not key=value")?;
        let mut d = self.data.lock().unwrap();
        assert_eq!(version, d.0 + 1, "applied in order");
        d.0 = version;
        d.1.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
        Ok(())
    }
    fn sync(&self) -> Result<(), String> {
        Ok(())
    }
    fn begin_snapshot(&self) -> Result<(), String> {
        let mut d = self.data.lock().unwrap();
        d.0 = 0;
        d.1.clear();
        Ok(())
    }
    fn load_chunk(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        self.data.lock().unwrap().1.extend(pairs.iter().cloned());
        Ok(())
    }
    fn finish_snapshot(&self, version: u64) -> Result<(), String> {
        self.data.lock().unwrap().0 = version;
        Ok(())
    }
    fn adopt_epoch(&self, epoch: u64) -> Result<(), String> {
        self.epoch.fetch_max(epoch, Ordering::SeqCst);
        Ok(())
    }
}

struct Tls {
    _dir: tempfile::TempDir,
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
}

fn tls() -> Tls {
    let dir = tempfile::tempdir().unwrap();
    replication::tls::generate(dir.path(), &["uk".to_owned()]).unwrap();
    let t = replication::tls::QuicTimeouts::default();
    Tls {
        server: replication::tls::quic_server_config(dir.path(), "uk", t).unwrap(),
        client: replication::tls::quic_client_config(dir.path(), "uk", "uk", t).unwrap(),
        _dir: dir,
    }
}

fn shipper(tls: &Tls, source: Arc<Mem>) -> (Arc<Shipper>, SocketAddr) {
    let config = ShipperConfig {
        cell: "uk".into(),
        allowed_sites: vec!["uk-london-2".into()],
        residency_source: "operator policy".into(),
        heartbeat: Duration::from_millis(50),
        lease: Default::default(),
    };
    let shipper = Shipper::bind(([127, 0, 0, 1], 0).into(), tls.server.clone(), config).unwrap();
    let addr = shipper.local_addr().unwrap();
    tokio::spawn(shipper.clone().run(source, std::future::pending()));
    (shipper, addr)
}

/// Follows `primary` from `sink` as `site` until the returned sender is dropped or set.
fn start_following(
    tls: &Tls,
    primary: SocketAddr,
    sink: Arc<Mem>,
    site: &str,
) -> (watch::Receiver<FollowStatus>, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let config = FollowConfig { cell: "uk".into(), site: site.into(), primary, quic: tls.client.clone() };
    let (status, status_rx) = watch::channel(FollowStatus::default());
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(follow(config, sink, status, stop_rx));
    (status_rx, stop, task)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_standby_follows_resumes_and_takes_a_snapshot_once_the_log_no_longer_reaches_it() {
    let tls = tls();
    let (primary, standby) = (Mem::new(1), Mem::new(1));
    for i in 0..10 {
        primary.commit(&format!("k{i}"), &format!("v{i}"));
    }
    let (shipper, addr) = shipper(&tls, primary.clone());
    // A standby holding nothing starts from a snapshot, then follows the log.
    let (status, stop, task) = start_following(&tls, addr, standby.clone(), "uk-london-2");
    until("the standby holds the primary's state", || standby.state() == primary.state()).await;
    primary.commit("k10", "v10");
    until("the standby holds the next commit", || standby.state() == primary.state()).await;
    until("the primary knows the standby's ack", || shipper.sessions().first().is_some_and(|s| s.acked_version == 11))
        .await;
    assert!(status.borrow().connected);
    let _ = stop.send(true);
    task.await.unwrap();

    // Away briefly: it resumes from its version with the commits since.
    primary.commit("k11", "v11");
    let (_, stop, task) = start_following(&tls, addr, standby.clone(), "uk-london-2");
    until("the standby resumed", || standby.state() == primary.state()).await;
    let _ = stop.send(true);
    task.await.unwrap();

    // Away longer than the log reaches: a snapshot again.
    for i in 12..20 {
        primary.commit(&format!("k{i}"), &format!("v{i}"));
    }
    primary.trim_to_last(2);
    let (_, stop, task) = start_following(&tls, addr, standby.clone(), "uk-london-2");
    until("the standby caught up by a snapshot", || standby.state() == primary.state()).await;
    let _ = stop.send(true);
    task.await.unwrap();
}

/// The primary's lease: each standby's answer to a heartbeat confirms it; with the standby gone
/// it runs out (and the store would refuse commits).
#[tokio::test]
async fn a_following_standby_confirms_the_primarys_lease_and_it_runs_out_once_the_standby_is_gone() {
    let tls = tls();
    let (primary, standby) = (Mem::new(1), Mem::new(1));
    let (shipper, addr) = shipper(&tls, primary.clone());
    let lease = shipper.lease();
    lease.require();
    assert!(!lease.holds(), "no one has confirmed it yet");
    let (_, stop, task) = start_following(&tls, addr, standby.clone(), "uk-london-2");
    until("the standby's answers confirm the lease", || lease.holds()).await;
    let _ = stop.send(true);
    task.await.unwrap();
    let deadline = tokio::time::Instant::now() + replication::lease::LEASE + Duration::from_secs(5);
    while lease.holds() {
        assert!(tokio::time::Instant::now() < deadline, "the lease outlived its last confirmation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_standby_at_a_site_the_region_does_not_allow_is_refused_naming_the_rule() {
    let tls = tls();
    let (primary, standby) = (Mem::new(1), Mem::new(1));
    primary.commit("player", "personal data");
    let (_, addr) = shipper(&tls, primary.clone());
    let (status, stop, task) = start_following(&tls, addr, standby.clone(), "us-east-1");
    until("the refusal", || status.borrow().last_error.is_some()).await;
    let error = status.borrow().last_error.clone().unwrap();
    assert!(error.contains("RESIDENCY") && error.contains("us-east-1") && error.contains("operator policy"), "{error}");
    assert_eq!(standby.state().0, 0, "nothing crossed");
    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test]
async fn epochs_fence_a_deposed_primary_and_two_primaries_at_one_epoch_both_stop() {
    let tls = tls();
    // The writer at epoch 2 (a promoted standby); the old primary, at 1, asks at its restart.
    let writer = Mem::new(2);
    let (_, addr) = shipper(&tls, writer.clone());
    let ask = FollowConfig { cell: "uk".into(), site: "uk-london-2".into(), primary: addr, quic: tls.client.clone() };
    let (why, epoch) = check_writer(&ask, 1).await.expect("the old primary learns it was deposed");
    assert_eq!(epoch, 2);
    assert!(why.starts_with("FENCED"), "{why}");
    assert_eq!(writer.fenced_by.load(Ordering::SeqCst), 0, "the writer stays the writer");
    // The writer asking an old primary's shipper: that one learns it is deposed; the writer is not.
    let old = Mem::new(1);
    let (_, old_addr) = shipper(&tls, old.clone());
    let ask_old = FollowConfig { primary: old_addr, ..ask.clone() };
    assert_eq!(check_writer(&ask_old, 2).await, None, "the writer keeps writing");
    assert_eq!(old.fenced_by.load(Ordering::SeqCst), 2, "the old primary fenced itself");
    // Two primaries at one epoch (both promoted): both stop.
    let twin = Mem::new(2);
    let (_, twin_addr) = shipper(&tls, twin.clone());
    let ask_twin = FollowConfig { primary: twin_addr, ..ask };
    let (why, _) = check_writer(&ask_twin, 2).await.expect("the asker stops");
    assert!(why.starts_with("DOUBLE_PRIMARY"), "{why}");
    assert_eq!(twin.fenced_by.load(Ordering::SeqCst), 2, "and so does the other");
}
