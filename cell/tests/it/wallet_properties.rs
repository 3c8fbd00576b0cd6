//! Property tests of the wallet against a real store: for any sequence of operations the books
//! balance per currency, no player balance goes negative, and replaying any request changes nothing.

use cell::domains::gaming::rounds::RoundCommand;
use cell::domains::wallet::{Hold, Movement, Settle, SettlePart};
use cell::events::EventContext;
use cell::idempotency::IdempotencyKey;
use cell::ledger::{Answered, Failed, Ledger, LedgerRefusal, Refusal, WriterConfig};
use cell::metrics::Metrics;
use cell::server::{CellConfig, OpenCell};
use cell::store::embedded::Durability;
use contracts::catalog::GameType;
use contracts::players::RegisterPlayerRequest;
use contracts::region::RegionConfig;
use contracts::wallet::MovementReason;
use contracts::{BetId, Currency, Money, MoneyError, PlayerId, RoundId, TransactionId};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;

const PLAYERS: u8 = 3;

/// The largest single GBP amount, in pence.
const AMOUNT_MAX_CENTS: i128 = 100_000_000 * 100;

#[derive(Debug, Clone)]
enum Op {
    Credit {
        player: u8,
        cents: i128,
    },
    Debit {
        player: u8,
        cents: i128,
    },
    Hold {
        player: u8,
        round: u8,
        bet: u8,
        cents: i128,
    },
    /// Settles `round` for every player holding in it, each with `delta_cents` (floored at minus
    /// their stake unless `below_stake`).
    Settle {
        round: u8,
        delta_cents: i128,
        below_stake: bool,
    },
    /// A provider's bet in game round `round` (of a game whose maximum multiplier is 10 when
    /// `capped`).
    Bet {
        player: u8,
        round: u8,
        bet: u8,
        cents: i128,
        capped: bool,
    },
    /// A provider's win; `close` ends the player's part of the round.
    Win {
        player: u8,
        round: u8,
        cents: i128,
        close: bool,
    },
    Rollback {
        player: u8,
        round: u8,
        bet: u8,
    },
    /// Replays the request at this index (modulo the history) with the same key.
    Replay {
        index: usize,
    },
}

/// Amounts in pence: mostly small, some at the currency's maximum, some far beyond it (up to
/// what a `Decimal` can hold).
fn cents() -> impl Strategy<Value = i128> {
    prop_oneof![
        6 => 1..5_000i128,
        2 => (AMOUNT_MAX_CENTS - 1_000)..(AMOUNT_MAX_CENTS + 1_000),
        1 => (AMOUNT_MAX_CENTS + 1)..10i128.pow(28),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PLAYERS, cents()).prop_map(|(player, cents)| Op::Credit { player, cents }),
        (0..PLAYERS, cents()).prop_map(|(player, cents)| Op::Debit { player, cents }),
        (0..PLAYERS, 0..4u8, 0..3u8, cents())
            .prop_map(|(player, round, bet, cents)| { Op::Hold { player, round, bet, cents } }),
        (0..4u8, prop_oneof![-3_000..3_000i128, cents(), cents().prop_map(|c| -c)], proptest::bool::weighted(0.1))
            .prop_map(|(round, delta_cents, below_stake)| Op::Settle { round, delta_cents, below_stake }),
        (0..PLAYERS, 0..4u8, 0..3u8, cents(), any::<bool>()).prop_map(|(player, round, bet, cents, capped)| Op::Bet {
            player,
            round,
            bet,
            cents,
            capped
        }),
        (0..PLAYERS, 0..4u8, prop_oneof![Just(0i128), cents()], any::<bool>())
            .prop_map(|(player, round, cents, close)| Op::Win { player, round, cents, close }),
        (0..PLAYERS, 0..4u8, 0..3u8).prop_map(|(player, round, bet)| Op::Rollback { player, round, bet }),
        (0..1_000usize).prop_map(|index| Op::Replay { index }),
    ]
}

fn gbp() -> Currency {
    Currency::from_code("GBP").unwrap()
}

fn money(cents: i64) -> Money {
    Money::signed(Decimal::new(cents, 2), gbp()).unwrap()
}

/// Pence as the contract edge takes them: refused (4xx) past the currency's maximum.
fn edge(cents: i128, zero_ok: bool) -> Result<Money, MoneyError> {
    let amount = Decimal::from_i128_with_scale(cents, 2);
    if zero_ok && cents == 0 {
        Money::signed(amount, gbp())
    } else {
        Money::positive(amount, gbp())
    }
}

/// A command of any of the money domains.
#[derive(Debug, Clone)]
enum Cmd {
    Movement(Movement),
    Hold(Hold),
    Settle(Settle),
    Round(RoundCommand),
}

/// An outcome as the test compares it: the answer's body, or the refusal's status; and whether
/// it was replayed.
type Seen = (Result<bytes::Bytes, u16>, bool);

fn seen<A, R: Refusal>(outcome: Result<Answered<A>, Failed<R>>) -> Seen {
    match outcome {
        Ok(a) => (Ok(a.body), a.replayed),
        Err(f) => (Err(f.status()), f.replayed()),
    }
}

async fn run(ledger: &Ledger, command: Cmd, key: IdempotencyKey) -> Seen {
    match command {
        Cmd::Movement(c) => seen(ledger.execute(c, key, ctx()).await),
        Cmd::Hold(c) => seen(ledger.execute(c, key, ctx()).await),
        Cmd::Settle(c) => seen(ledger.execute(c, key, ctx()).await),
        Cmd::Round(c) => seen(ledger.execute(c, key, ctx()).await),
    }
}

fn player(i: u8) -> PlayerId {
    PlayerId::new(format!("uk-prop-{i}")).unwrap()
}

fn ctx() -> EventContext {
    EventContext { cell: "uk".into(), trace_id: "proptest".into(), operator: None }
}

fn key(n: usize, command: &impl std::fmt::Debug) -> IdempotencyKey {
    IdempotencyKey::new(&format!("op-{n}"), "prop", &serde_json::Value::String(format!("{command:?}"))).unwrap()
}

/// Registers the test's players. Blocking.
fn register_players(compliance: &cell::domains::compliance::Compliance) {
    for i in 0..PLAYERS {
        let request = RegisterPlayerRequest {
            player_id: player(i),
            date_of_birth: chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
            country: contracts::CountryCode::new("GB").unwrap(),
            currency: "GBP".into(),
            password: contracts::players::Password(String::new()),
            profile: None,
        };
        let k = IdempotencyKey::new(&format!("reg-{i}"), "players.register", &serde_json::Value::Null).unwrap();
        compliance.player_register(request, None, &k, &ctx(), None, None).unwrap();
    }
}

async fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = CellConfig {
        region: RegionConfig::from_file(&crate::harness::region_path("uk")).unwrap(),
        data_dir: dir.path().to_owned(),
        store: Default::default(),
        durability: Durability::GroupSync,
        writer: WriterConfig::default(),
        tls: None,
        providers: Vec::new(),
        control: None,
        intervals: Default::default(),
        store_faults: None,
        registers: None,
        kyc: None,
        psps: Vec::new(),
        callback_base: String::new(),
        tamper_token_url: None,
        replication: None,
        clock: cell::clock::system(),
    };
    let cell = tokio::task::spawn_blocking(move || OpenCell::open(&config, Arc::new(Metrics::default())))
        .await
        .unwrap()
        .unwrap();
    let wallet = cell.domains.ledger.clone();
    let compliance = cell.domains.compliance.clone();
    tokio::task::spawn_blocking(move || register_players(&compliance)).await.unwrap();

    // Open holds per round, as the answers report them: (player, stake in cents); and open
    // provider bets per (game round, bet): (player, stake in cents).
    let mut open: BTreeMap<u8, Vec<(u8, i128)>> = BTreeMap::new();
    let mut game_open: BTreeMap<(u8, u8), (u8, i128)> = BTreeMap::new();
    let mut history: Vec<(Cmd, IdempotencyKey, Seen)> = Vec::new();
    let game_round = |round: u8| RoundId::new(format!("g{round}")).unwrap();
    for op in ops {
        // The contract edge: an amount it refuses is a 4xx, and nothing reaches the writer.
        let command = match &op {
            Op::Credit { player: p, cents } => edge(*cents, false).map(|money| {
                Cmd::Movement(Movement {
                    player: player(*p),
                    money,
                    reason: MovementReason::Deposit,
                    inward: true,
                    location: None,
                    payment_method: None,
                })
            }),
            Op::Debit { player: p, cents } => edge(*cents, false).map(|money| {
                Cmd::Movement(Movement {
                    player: player(*p),
                    money,
                    reason: MovementReason::Withdrawal,
                    inward: false,
                    location: None,
                    payment_method: None,
                })
            }),
            Op::Hold { player: p, round, bet, cents } => edge(*cents, false).map(|money| {
                Cmd::Hold(Hold {
                    player: player(*p),
                    round: RoundId::new(format!("r{round}")).unwrap(),
                    bet: BetId::new(format!("b{p}-{bet}")).unwrap(),
                    money,
                    location: None,
                })
            }),
            Op::Settle { round, delta_cents, below_stake } => {
                let mut stakes: BTreeMap<u8, i128> = BTreeMap::new();
                for (p, cents) in open.get(round).into_iter().flatten() {
                    *stakes.entry(*p).or_default() += cents;
                }
                let delta = |stake: i128| if *below_stake { *delta_cents } else { (*delta_cents).max(-stake) };
                let mut parts: Vec<Result<SettlePart, MoneyError>> = stakes
                    .iter()
                    .map(|(p, stake)| {
                        let amount = Decimal::from_i128_with_scale(delta(*stake), 2);
                        Ok(SettlePart { player: player(*p), bet: None, delta: Money::signed(amount, gbp())? })
                    })
                    .collect();
                if parts.is_empty() {
                    let amount = Decimal::from_i128_with_scale(*delta_cents, 2);
                    parts.push(Money::signed(amount, gbp()).map(|delta| SettlePart {
                        player: player(0),
                        bet: None,
                        delta,
                    }));
                }
                parts
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
                    .map(|parts| Cmd::Settle(Settle { round: RoundId::new(format!("r{round}")).unwrap(), parts }))
            }
            // Bet 0 is on a slot, under the UK's stake cap gate; the others on a table game.
            Op::Bet { player: p, round, bet, cents, capped } => edge(*cents, false).map(|money| {
                Cmd::Round(RoundCommand::Bet {
                    provider: "prop".into(),
                    player: player(*p),
                    round: game_round(*round),
                    transaction: TransactionId::new(format!("gb{p}-{bet}")).unwrap(),
                    game: if *capped { "capped" } else { "plain" }.into(),
                    money,
                    maintenance: None,
                    product: if *bet == 0 { GameType::Slots } else { GameType::Table },
                    max_multiplier: capped.then(|| Decimal::from(10)),
                })
            }),
            Op::Win { player: p, round, cents, close } => edge(*cents, true).map(|money| {
                Cmd::Round(RoundCommand::Win {
                    provider: "prop".into(),
                    player: player(*p),
                    round: game_round(*round),
                    transaction: TransactionId::new(format!("w{}", history.len())).unwrap(),
                    money,
                    close: *close,
                })
            }),
            Op::Rollback { player: p, round, bet } => Ok(Cmd::Round(RoundCommand::Rollback {
                provider: "prop".into(),
                player: player(*p),
                round: game_round(*round),
                transaction: TransactionId::new(format!("rb{}", history.len())).unwrap(),
                bet: BetId::new(format!("gb{p}-{bet}")).unwrap(),
            })),
            Op::Replay { index } => {
                if history.is_empty() {
                    continue;
                }
                let (command, k, original) = history[index % history.len()].clone();
                let totals_before = wallet.ledger_totals().unwrap();
                let replayed = run(&wallet, command, k).await;
                prop_assert_eq!(&replayed.0, &original.0, "a replay answers the original body or status");
                prop_assert!(replayed.1, "a replay says it is one");
                prop_assert_eq!(wallet.ledger_totals().unwrap(), totals_before, "a replay moves no money");
                continue;
            }
        };
        let command = match command {
            Ok(command) => command,
            Err(refused) => {
                let status = LedgerRefusal::from(refused).status();
                prop_assert!((400..500).contains(&status), "the edge refuses with a 4xx: {}", status);
                continue;
            }
        };
        let k = key(history.len(), &command);
        let result = run(&wallet, command.clone(), k.clone()).await;
        if let Err(status) = &result.0 {
            prop_assert!((400..500).contains(status), "{:?} refused with {}", op, status);
        }
        prop_assert!(wallet.fault().get().is_none(), "the writer never fails: {:?}", wallet.fault().get());
        for (currency, total) in wallet.ledger_totals().unwrap() {
            prop_assert!(total.is_zero(), "after {:?}: {} ledger sums to {}", op, currency, total);
        }
        if result.0.is_ok() {
            let cents_of = |money: &Money| (money.amount() * Decimal::from(100)).try_into().unwrap();
            match (&command, &op) {
                (Cmd::Hold(Hold { money, .. }), Op::Hold { player: p, round, .. }) => {
                    open.entry(*round).or_default().push((*p, cents_of(money)));
                }
                (Cmd::Settle(_), Op::Settle { round, .. }) => {
                    open.remove(round);
                }
                (Cmd::Round(RoundCommand::Bet { money, .. }), Op::Bet { player: p, round, bet, .. }) => {
                    game_open.insert((*round, *bet + *p * 10), (*p, cents_of(money)));
                }
                (Cmd::Round(RoundCommand::Win { close: true, .. }), Op::Win { player: p, round, .. }) => {
                    game_open.retain(|(r, _), (owner, _)| !(r == round && owner == p));
                }
                (Cmd::Round(RoundCommand::Rollback { .. }), Op::Rollback { player: p, round, bet }) => {
                    game_open.remove(&(*round, *bet + *p * 10));
                }
                _ => {}
            }
        }
        history.push((command, k, result));
    }

    for i in 0..PLAYERS {
        let w = wallet.clone();
        let b = tokio::task::spawn_blocking(move || w.balance(&player(i), None, None)).await.unwrap().unwrap();
        for amount in [b.cash, b.bonus, b.held] {
            prop_assert!(!amount.0.is_sign_negative() || amount.0.is_zero(), "negative balance {:?}", b);
        }
        prop_assert!(b.cash.0 + b.bonus.0 + b.held.0 <= gbp().balance_max(), "over the maximum: {:?}", b);
        let held_cents: i128 = open.values().flatten().filter(|(p, _)| *p == i).map(|(_, c)| c).sum::<i128>()
            + game_open.values().filter(|(p, _)| *p == i).map(|(_, c)| c).sum::<i128>();
        prop_assert_eq!(b.held.0, Decimal::from_i128_with_scale(held_cents, 2), "held equals the open holds and bets");
    }
    tokio::task::spawn_blocking(move || cell.close()).await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    /// Any sequence of credits, debits, holds, settles, bets, wins and rollbacks, with amounts up
    /// to and past the currency's maxima, applies or is refused with a 4xx; the writer never
    /// fails; the books sum to exactly zero after every step; replays change nothing.
    #[test]
    fn books_balance_and_replays_change_nothing(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(run_case(ops))?;
    }
}

/// Under injected store faults (errors, commits whose outcome is unknown, delays), every operation
/// retried with its key until it succeeds takes effect exactly once, and the books still balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_faults_never_apply_an_operation_twice() {
    use cell::store::embedded::EmbeddedStore;
    use cell::store::fault::{FaultConfig, FaultyStore};
    use cell::store::Store;
    let seed = 42;
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap());
    let region = Arc::new(RegionConfig::from_file(&crate::harness::region_path("uk")).unwrap());
    // Players are registered before faults start.
    register_players(&cell::domains::compliance::Compliance::new(
        embedded.clone(),
        region.clone(),
        cell::clock::system(),
        None,
        None,
    ));
    let faulty: Arc<dyn Store> = Arc::new(FaultyStore::new(
        embedded.clone(),
        FaultConfig {
            error_probability: 0.02,
            unknown_result_probability: 0.05,
            commit_delay_max: std::time::Duration::from_micros(300),
            panic_on_key: None,
        },
        seed,
    ));
    let (wallet, writer) = crate::harness::ledger(faulty, Vec::new());
    const CREDITS: usize = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..CREDITS {
        let wallet = wallet.clone();
        tasks.spawn(async move {
            let command = Movement {
                player: player((n % PLAYERS as usize) as u8),
                money: money(100),
                reason: MovementReason::Deposit,
                inward: true,
                location: None,
                payment_method: None,
            };
            let k = key(n, &command);
            let mut attempts = 0;
            loop {
                attempts += 1;
                match wallet.execute(command.clone(), k.clone(), ctx()).await {
                    Ok(_) => return attempts,
                    Err(Failed::Unavailable(_)) if attempts < 50 => {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await
                    }
                    Err(e) => panic!("seed {seed}: credit {n} refused: {e}"),
                }
            }
        });
    }
    let mut retried = 0;
    while let Some(attempts) = tasks.join_next().await {
        retried += usize::from(attempts.unwrap() > 1);
    }
    assert!(retried > 0, "seed {seed}: faults were injected and retried");
    crate::harness::ledger_stop(wallet, writer).await;
    // Read the truth from a fresh wallet over the plain store.
    let (reader, writer) = crate::harness::ledger(embedded, Vec::new());
    let mut total = Decimal::ZERO;
    for i in 0..PLAYERS {
        let r = reader.clone();
        total += tokio::task::spawn_blocking(move || r.balance(&player(i), None, None)).await.unwrap().unwrap().cash.0;
    }
    assert_eq!(total, Decimal::from(CREDITS), "seed {seed}: every credit applied exactly once");
    for (currency, sum) in reader.ledger_totals().unwrap() {
        assert!(sum.is_zero(), "seed {seed}: {currency} ledger sums to {sum}");
    }
    crate::harness::ledger_stop(reader, writer).await;
}
