//! `cell bench export`: a month of a Spanish cell's regulator exports built from a synthetic audit
//! chain (players' deposits, then rounds spread over the month, written straight into a store's
//! chain in process), each build a `cell export build` child whose peak memory is read from
//! `/proc`. Prints records (sub-records and sessions) per second and the peak resident memory of
//! each build. The build streams the chain: run two sizes to see the memory not grow with rounds.

use crate::audit::AuditChain;
use crate::store::embedded::{Durability, EmbeddedStore};
use crate::store::Store;
use contracts::events::{Envelope, EventPayload};
use contracts::{Amount, BetId, Currency, PlayerId, RoundId};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct ExportBenchArgs {
    /// Players (each deposits once, at the month's start).
    #[arg(long, default_value_t = 100_000)]
    pub players: usize,
    /// Rounds over the month (a bet and its settlement each: two chained events).
    #[arg(long, default_value_t = 10_000_000)]
    pub rounds: u64,
    /// The month, `YYYY-MM` (over).
    #[arg(long, default_value = "2026-11")]
    pub month: String,
    /// Also build every day's JUC (each reads the chain from its first record).
    #[arg(long)]
    pub daily: bool,
    /// Keep the generated cell data here (default: a temporary directory).
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

const ES_REGION: &str = include_str!("../../../config/regions/es.toml");
/// Chained records per store transaction while generating.
const BATCH: u64 = 20_000;

fn envelope<P: EventPayload + serde::Serialize>(payload: P, at: chrono::DateTime<chrono::Utc>, n: u64) -> String {
    let envelope = Envelope {
        event: P::NAME.to_owned(),
        v: P::VERSION.to_owned(),
        id: format!("bench-{n}"),
        ts: at,
        trace_id: "bench".into(),
        cell: "es".into(),
        payload,
    };
    serde_json::to_string(&envelope).expect("an event encodes")
}

/// Registers the players at the month's start, each with a profile, as the compliance domain
/// does: a `player.registered` event in the log and the profile beside it (what RUD and RUT read).
fn register(
    store: &EmbeddedStore,
    players: usize,
    start: chrono::DateTime<chrono::Utc>,
    player: &dyn Fn(usize) -> PlayerId,
) -> anyhow::Result<()> {
    use contracts::players::{Address, DocumentKind, IdentityDocument, Player, PlayerProfile, Sex};
    let es = contracts::CountryCode::new("ES").map_err(anyhow::Error::msg)?;
    let first = (0..players).step_by(10_000);
    for chunk_start in first {
        let mut tx = store.begin()?;
        for (order, i) in (chunk_start..players.min(chunk_start + 10_000)).enumerate() {
            let registered = contracts::events::PlayerRegistered {
                player: Player {
                    player_id: player(i),
                    date_of_birth: chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("a date"),
                    country: es,
                    currency: Currency::from_code("EUR")?,
                    cell: "es".into(),
                    registered_at: start,
                },
            };
            crate::events::append(tx.as_mut(), u16::try_from(order)?, &envelope(registered, start, i as u64))?;
            let profile = PlayerProfile {
                given_name: "Bench".into(),
                family_name: format!("Player {i}"),
                nationality: Some(es),
                email: format!("b{i}@bench.example"),
                phone: "+34600000000".into(),
                address: Address {
                    street: "Calle 1".into(),
                    city: "Madrid".into(),
                    postcode: "28013".into(),
                    country: es,
                },
                identity_document: Some(IdentityDocument {
                    kind: DocumentKind::Dni,
                    number: format!("{:08}Z", i),
                    issuing_country: es,
                }),
                fiscal_region: Some("13".into()),
                sex: Some(if i % 2 == 0 { Sex::Female } else { Sex::Male }),
            };
            let key = crate::domains::compliance::profile_key(player(i).as_str());
            tx.set(&key, &rmp_serde::to_vec_named(&profile)?)?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Writes the synthetic chain: deposits, then `rounds` rounds (bet, then a settlement paying
/// 2.00 one time in two), evenly over the month.
fn generate(
    store: &EmbeddedStore,
    args: &ExportBenchArgs,
    start: chrono::DateTime<chrono::Utc>,
    span: Duration,
) -> anyhow::Result<u64> {
    use contracts::gaming::{BetPlaced, BetStatus, RoundPart, RoundSettled, RoundStatus};
    let eur = Currency::from_code("EUR").expect("EUR");
    let (one, two, zero) =
        (Amount::at_scale(1.into(), 2), Amount::at_scale(2.into(), 2), Amount::at_scale(0.into(), 2));
    let player = |i: usize| PlayerId::new(format!("es-b{i}")).expect("a player id");
    register(store, args.players, start, &player)?;
    let mut chain = AuditChain::default();
    let mut tx = store.begin()?;
    let mut n = 0u64;
    let flush = |tx: &mut Box<dyn crate::store::Transaction>, chain: &AuditChain, n: u64| -> anyhow::Result<()> {
        if n.is_multiple_of(BATCH) {
            chain.write_head(tx.as_mut())?;
            let done = std::mem::replace(tx, store.begin()?);
            done.commit()?;
        }
        Ok(())
    };
    for i in 0..args.players {
        let deposit = contracts::events::WalletCredited {
            player_id: player(i),
            currency: eur,
            amount: Amount::at_scale(100.into(), 2),
            reason: contracts::wallet::MovementReason::Deposit,
            entry_id: i.to_string(),
            operator: None,
        };
        n += 1;
        chain.append(tx.as_mut(), envelope(deposit, start, n))?;
        flush(&mut tx, &chain, n)?;
    }
    let step = span.as_nanos() / u128::from(args.rounds.max(1));
    for r in 0..args.rounds {
        let at = start + chrono::Duration::nanoseconds(i64::try_from(step * u128::from(r)).unwrap_or(i64::MAX));
        let p = player(usize::try_from(r).unwrap_or(0) % args.players.max(1));
        let round = RoundId::new(format!("r{r}")).expect("a round id");
        let bet = BetId::new(format!("b{r}")).expect("a bet id");
        let placed = BetPlaced {
            provider: "demo".into(),
            round_id: round.clone(),
            bet_id: bet.clone(),
            player_id: p.clone(),
            game_id: "slot-1".into(),
            currency: eur,
            amount: one,
            status: BetStatus::Open,
        };
        n += 1;
        chain.append(tx.as_mut(), envelope(placed, at, n))?;
        flush(&mut tx, &chain, n)?;
        let part = RoundPart {
            player_id: p,
            bet_ids: vec![bet],
            currency: eur,
            stake: one,
            won: if r.is_multiple_of(2) { two } else { zero },
            refunded: zero,
        };
        let settled =
            RoundSettled { provider: "demo".into(), round_id: round, status: RoundStatus::Settled, parts: vec![part] };
        n += 1;
        chain.append(tx.as_mut(), envelope(settled, at, n))?;
        flush(&mut tx, &chain, n)?;
    }
    chain.write_head(tx.as_mut())?;
    tx.commit()?;
    Ok(n)
}

/// Runs one `cell export build` child; its wall time and its peak resident memory (VmHWM, read
/// from `/proc` while it runs), and the records it wrote.
/// Runs the cell binary with `args` as a child: how long it took, its peak resident memory (KiB,
/// from `/proc`) and what it wrote.
fn child(args: &[&std::ffi::OsStr]) -> anyhow::Result<(Duration, u64, std::process::Output)> {
    let started = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let output = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            let hwm = text.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1));
            peak_kb = peak_kb.max(hwm.and_then(|v| v.parse().ok()).unwrap_or(0));
        }
        if child.try_wait()?.is_some() {
            break child.wait_with_output()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok((started.elapsed(), peak_kb, output))
}

fn build(
    data: &std::path::Path,
    kind: &str,
    period: &str,
    out: &std::path::Path,
) -> anyhow::Result<(Duration, u64, contracts::exports::ExportManifest)> {
    let region = data.join("es.toml");
    let out = out.join(format!("{kind}-{period}"));
    let words = ["export", "build", "--jurisdiction", "ES", "--type", kind, "--period", period, "--data"];
    let args: Vec<&std::ffi::OsStr> = words
        .iter()
        .map(std::ffi::OsStr::new)
        .chain([data.as_os_str(), "--region".as_ref(), region.as_os_str(), "--out".as_ref(), out.as_os_str()])
        .collect();
    let (took, peak_kb, output) = child(&args)?;
    if !output.status.success() {
        anyhow::bail!("{kind} {period}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let manifest: contracts::exports::ExportManifest = serde_json::from_slice(&output.stdout)?;
    Ok((took, peak_kb, manifest))
}

pub async fn export(args: ExportBenchArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run(args)).await?
}

fn run(args: ExportBenchArgs) -> anyhow::Result<()> {
    let period = crate::exports::parse_period(&args.month)?;
    let temp = tempfile::tempdir()?;
    let data = args.keep.clone().unwrap_or_else(|| temp.path().join("es"));
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("es.toml"), ES_REGION)?;
    let start = period.start;
    let span = (period.end - period.start).to_std()?.saturating_sub(Duration::from_secs(1));
    let generating = Instant::now();
    let events = {
        let store = EmbeddedStore::open(&data.join("store"), Durability::GroupSync)?;
        generate(&store, &args, start, span)?
    };
    let generated = generating.elapsed();
    println!(
        "chain_events={events} players={} rounds={} generated_in_s={:.1}",
        args.players,
        args.rounds,
        generated.as_secs_f64()
    );
    // The baseline: the same store opened and its whole chain read and checked, compiling
    // nothing (`cell audit verify`). What a build holds beyond it is the build's own.
    // The cell's audit key, which a build would make: `cell audit verify` needs it.
    crate::signing_key::load_or_create(&data.join("audit-ed25519.key"))?;
    let verify_args = ["audit".as_ref(), "verify".as_ref(), "--data".as_ref(), data.as_os_str()];
    let mut attempt = 0;
    let (took, baseline_kb) = loop {
        let (took, kb, output) = child(&verify_args)?;
        attempt += 1;
        if output.status.success() {
            break (took, kb);
        }
        if attempt == 20 {
            anyhow::bail!("cell audit verify on the generated store: {}", String::from_utf8_lossy(&output.stderr));
        }
        // The generator's store may hold its lock a moment after it is dropped.
        std::thread::sleep(Duration::from_millis(250));
    };
    println!(
        "baseline=audit-verify seconds={:.2} peak_rss_mb={:.1} events_per_s={:.0}",
        took.as_secs_f64(),
        baseline_kb as f64 / 1024.0,
        events as f64 / took.as_secs_f64()
    );
    let out = temp.path().join("out");
    let mut builds: Vec<(String, String)> =
        ["RUD", "RUT", "CJD", "CJT", "OPT"].iter().map(|k| ((*k).to_owned(), args.month.clone())).collect();
    if args.daily {
        for day in period.start.date_naive().iter_days().take_while(|d| *d < period.end.date_naive()) {
            builds.push(("JUC".into(), day.to_string()));
        }
    }
    let (mut total_time, mut total_records, mut total_read, mut peak) = (Duration::ZERO, 0u64, 0u64, 0u64);
    for (kind, label) in &builds {
        let (took, peak_kb, manifest) = build(&data, kind, label, &out)?;
        // The chain starts with the month: a month's build reads it from its first record, a
        // day's JUC its own day (each quarter resumes from the checkpoint of the one before).
        // RUD reads the register, not the chain.
        let read =
            if kind == "RUD" { 0 } else { (manifest.chain.last_seq + 1).saturating_sub(manifest.chain.first_seq) };
        println!(
            "build={kind}:{label} seconds={:.2} records={} peak_rss_mb={:.1} events_per_s={:.0}",
            took.as_secs_f64(),
            manifest.record_count,
            peak_kb as f64 / 1024.0,
            read as f64 / took.as_secs_f64()
        );
        total_time += took;
        total_records += manifest.record_count;
        total_read += read;
        peak = peak.max(peak_kb);
    }
    println!(
        "export_builds={} export_seconds={:.1} records={total_records} records_per_s={:.0} chain_events_read_per_s={:.0} peak_rss_mb={:.1}",
        builds.len(),
        total_time.as_secs_f64(),
        total_records as f64 / total_time.as_secs_f64().max(1e-9),
        total_read as f64 / total_time.as_secs_f64().max(1e-9),
        peak as f64 / 1024.0
    );
    Ok(())
}
