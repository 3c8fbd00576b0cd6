//! The kernel's gates, as a rule that a domain never sees: registered at start, run on every entry
//! whichever domain posts it, refusing with its rule and policy version and leaving no trace.

use cell::domains::gaming::rounds::RoundCommand;
use cell::domains::wallet::{Hold, Movement, Settle, SettlePart, WalletError};
use cell::events::EventContext;
use cell::idempotency::IdempotencyKey;
use cell::ledger::{Failed, Gate, GateRefusal, GatedEntry, LedgerRefusal, PostingKind, StakeContext};
use contracts::catalog::GameType;
use contracts::{BetId, CellCode, Currency, Money, PlayerId, RoundId, TransactionId};
use rust_decimal::Decimal;
use std::sync::{Arc, Mutex};

/// What a gate saw of one entry.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    kind: PostingKind,
    player: String,
    age: u32,
    jurisdiction: String,
    amount: Decimal,
    stake: Option<StakeContext>,
}

/// Records every entry; refuses any entry paying `blocked` (a rule no domain knows of).
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    blocked: PlayerId,
}

impl Gate for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn check(
        &self,
        e: &GatedEntry<'_>,
        _: &mut cell::ledger::GateState<'_>,
    ) -> Result<Result<(), GateRefusal>, cell::store::StoreError> {
        Ok(self.decide(e))
    }
}

impl Recorder {
    fn decide(&self, e: &GatedEntry<'_>) -> Result<(), GateRefusal> {
        self.seen.lock().unwrap().push(Seen {
            kind: e.kind,
            player: e.player.player.to_string(),
            age: e.player.age,
            jurisdiction: e.player.jurisdiction.to_owned(),
            amount: e.amount,
            stake: e.stake,
        });
        if e.player.player == &self.blocked && e.kind == PostingKind::Win {
            return Err(GateRefusal {
                code: CellCode::StakeLimitExceeded,
                rule: "test-no-wins".into(),
                policy_version: "t1".into(),
                message: "no wins for this player (a test rule)".into(),
            });
        }
        Ok(())
    }
}

fn ctx() -> EventContext {
    EventContext { cell: "uk".into(), trace_id: "gates".into(), operator: None }
}

fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey::new(name, "gates", &serde_json::Value::Null).unwrap()
}

fn gbp(amount: i64) -> Money {
    Money::signed(Decimal::from(amount), Currency::from_code("GBP").unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_gate_sees_every_entry_of_every_domain_and_its_refusal_moves_nothing() {
    use cell::store::embedded::{Durability, EmbeddedStore};
    use cell::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap());
    let region = Arc::new(contracts::region::RegionConfig::from_file(&crate::harness::region_path("uk")).unwrap());
    let compliance =
        cell::domains::compliance::Compliance::new(store.clone(), region.clone(), cell::clock::system(), None, None);
    let (alice, bob) = (PlayerId::new("uk-alice").unwrap(), PlayerId::new("uk-bob").unwrap());
    for (i, player) in [&alice, &bob].into_iter().enumerate() {
        let request = contracts::players::RegisterPlayerRequest {
            player_id: player.clone(),
            date_of_birth: chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
            country: contracts::CountryCode::new("GB").unwrap(),
            currency: "GBP".into(),
            password: contracts::players::Password(String::new()),
            profile: None,
        };
        compliance.player_register(request, None, &key(&format!("reg-{i}")), &ctx(), None, None).unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Recorder { seen: seen.clone(), blocked: bob.clone() };
    let (ledger, writer) = crate::harness::ledger(store, vec![Box::new(gate)]);

    for (i, player) in [&alice, &bob].into_iter().enumerate() {
        let deposit = Movement {
            player: player.clone(),
            money: gbp(100),
            reason: contracts::wallet::MovementReason::Deposit,
            inward: true,
            location: None,
            payment_method: None,
        };
        ledger.execute(deposit, key(&format!("dep-{i}")), ctx()).await.unwrap();
        let round = RoundId::new("r1").unwrap();
        let hold = Hold {
            player: player.clone(),
            round,
            bet: BetId::new(format!("b{i}")).unwrap(),
            money: gbp(10),
            location: None,
        };
        ledger.execute(hold, key(&format!("hold-{i}")), ctx()).await.unwrap();
    }
    // A settle paying both: the gate refuses Bob's entry, so Alice's is not posted either.
    let parts = [&alice, &bob].map(|p| SettlePart { player: p.clone(), bet: None, delta: gbp(5) }).to_vec();
    let settle = Settle { round: RoundId::new("r1").unwrap(), parts };
    let refused = ledger.execute(settle.clone(), key("settle"), ctx()).await.unwrap_err();
    let Failed::Refused(WalletError::Ledger(LedgerRefusal::Gate(rule))) = &refused else {
        panic!("refused by the gate: {refused:?}")
    };
    assert_eq!((rule.rule.as_str(), rule.policy_version.as_str()), ("test-no-wins", "t1"));
    assert_eq!((refused.code(), refused.status()), (CellCode::StakeLimitExceeded, 422));
    for player in [&alice, &bob] {
        let balance = ledger.balance(player, None, None).unwrap();
        assert_eq!((balance.cash.0, balance.held.0), (Decimal::from(90), Decimal::from(10)), "nothing moved");
    }
    // The replay answers the recorded refusal.
    let replayed = ledger.execute(settle, key("settle"), ctx()).await.unwrap_err();
    assert_eq!((replayed.code(), replayed.replayed()), (CellCode::StakeLimitExceeded, true));

    // Gaming's stake passes the same gate, with its round.
    let bet = RoundCommand::Bet {
        provider: "demo".into(),
        player: alice.clone(),
        round: RoundId::new("g1").unwrap(),
        transaction: TransactionId::new("t1").unwrap(),
        game: "slot-1".into(),
        money: gbp(2),
        maintenance: None,
        product: GameType::Slots,
        max_multiplier: None,
    };
    ledger.execute(bet, key("bet"), ctx()).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    let kinds: Vec<(PostingKind, &str)> = seen.iter().map(|s| (s.kind, s.player.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (PostingKind::Deposit, "uk-alice"),
            (PostingKind::Stake, "uk-alice"),
            (PostingKind::Deposit, "uk-bob"),
            (PostingKind::Stake, "uk-bob"),
            (PostingKind::Win, "uk-alice"),
            (PostingKind::Win, "uk-bob"),
            (PostingKind::Stake, "uk-alice"),
        ]
    );
    let last = seen.last().unwrap();
    assert_eq!((last.jurisdiction.as_str(), last.amount), ("uk", Decimal::from(2)));
    assert!(last.age >= 26, "the player's age on the batch's date: {}", last.age);
    assert_eq!(last.stake, Some(StakeContext { product: GameType::Slots, round_stake: Decimal::from(2) }));
    crate::harness::ledger_stop(ledger, writer).await;
}
