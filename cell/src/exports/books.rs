//! The books an export is compiled from: facts folded, in chain order, into running balances
//! (from the first record, so a period's opening balance is what every earlier event left), and
//! into the period's aggregates: per player, per game session, per game type. State kept between
//! events is bounded by players and open rounds, never by the number of rounds.
//!
//! A game session is what the export's regulator calls one ([`SessionRule`]): Denmark's is a
//! player's play of a game on a day; Spain's (JUC) is a player's play until [`IDLE`] passes
//! without any, reported in parts, one per quarter of an hour it played in.

use super::facts::{Fact, Game, RoundRef};
use contracts::PlayerId;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A player in one currency.
pub type Account = (PlayerId, String);

/// One deposit or withdrawal, as the regulator lists operations.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub at: chrono::DateTime<chrono::Utc>,
    pub amount: Decimal,
    pub method: String,
}

/// A player's money movements over the period, by kind (all positive but `other`, signed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Movements {
    pub opening: Decimal,
    pub deposits: Vec<Operation>,
    pub withdrawals: Vec<Operation>,
    /// Stakes by game type.
    pub stakes: BTreeMap<&'static str, Decimal>,
    pub stakes_returned: BTreeMap<&'static str, Decimal>,
    pub wins: BTreeMap<&'static str, Decimal>,
    pub other: Decimal,
}

impl Movements {
    pub fn deposited(&self) -> Decimal {
        self.deposits.iter().map(|o| o.amount).sum()
    }
    pub fn withdrawn(&self) -> Decimal {
        self.withdrawals.iter().map(|o| o.amount).sum()
    }
    pub fn staked(&self) -> Decimal {
        self.stakes.values().sum()
    }
    pub fn returned(&self) -> Decimal {
        self.stakes_returned.values().sum()
    }
    pub fn won(&self) -> Decimal {
        self.wins.values().sum()
    }
    /// The balance at the period's end: the opening balance and every movement.
    pub fn closing(&self) -> Decimal {
        self.opening + self.deposited() - self.withdrawn() - self.staked() + self.returned() + self.won() + self.other
    }
}

/// How an export groups play into game sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionRule {
    /// None kept (the accounts' and the register's exports).
    None,
    /// A player's play of one game on one day (Denmark's `KasinospilSession`).
    Daily,
    /// A player's play until [`IDLE`] passes without any, in parts of a quarter of an hour
    /// (Spain's real-time JUC: a part is what one batch reports of a session).
    Idle,
}

/// How long a player plays nothing before their game session ends (Spain). The platform sees
/// bets and wins, not a game window closed: a pause this long is the player walking away.
/// Shorter than a quarter of an hour, so a short session is filed whole, in one registro.
pub const IDLE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Which session, and which part of it, some play counts in: for [`SessionRule::Daily`], both
/// the day's midnight; for [`SessionRule::Idle`], the session's first play and the start of the
/// quarter of an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bucket {
    pub session: chrono::DateTime<chrono::Utc>,
    pub part: chrono::DateTime<chrono::Utc>,
}

/// A player's play of one game in one part of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub player: PlayerId,
    pub currency: String,
    pub game_id: String,
    pub bucket: Bucket,
    pub first: chrono::DateTime<chrono::Utc>,
    pub last: chrono::DateTime<chrono::Utc>,
    pub stakes: Decimal,
    pub returned: Decimal,
    pub wins: Decimal,
    /// Rounds played (distinct rounds staked in).
    pub rounds: u64,
    /// Rounds staked in this bucket whose part is still open: while there are, a rollback may
    /// still change the session (it is then kept for a correction).
    open: u32,
}

impl Session {
    pub fn day(&self) -> chrono::NaiveDate {
        self.bucket.part.date_naive()
    }
}

/// Where a session's play of a game is kept: `(player, game, bucket)`.
pub type SessionKey = (PlayerId, String, Bucket);

/// A player's session under [`SessionRule::Idle`] as the scan stands: when it started, its last
/// play (of which game, in which currency).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Live {
    pub player: PlayerId,
    pub currency: String,
    pub game_id: String,
    pub started: chrono::DateTime<chrono::Utc>,
    pub last: chrono::DateTime<chrono::Utc>,
}

impl Live {
    /// When the session ends for want of play.
    pub fn ends(&self) -> chrono::DateTime<chrono::Utc> {
        self.last + IDLE
    }
}

/// A player's part of a round still open: its game, its bets' buckets and the wins already paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenPart {
    game_id: String,
    bets: Vec<(String, Bucket)>,
    won_paid: Decimal,
}

/// The regulator's game type of a game id (DGOJ `TipoJuego`): the catalog's ids name the game.
pub fn game_type(game_id: &str) -> &'static str {
    let id = game_id.to_ascii_lowercase();
    if id.contains("blackjack") {
        "BLJ"
    } else if id.contains("roulette") {
        "RLT"
    } else if id.contains("baccarat") || id.contains("punto") {
        "PUN"
    } else if id.contains("bingo") {
        "BNG"
    } else if id.contains("poker") {
        "POC"
    } else {
        "AZA"
    }
}

/// What one fact of the period was folded into, for an export's index of its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// The player whose registration or movements it changed (RUD, CJD, CJT).
    pub player: Option<PlayerId>,
    /// The game session it counts in (JUC; OPT reads its game), kept or not.
    pub session: Option<SessionKey>,
    /// Set when that session is of an earlier day (a late rollback): it is corrected.
    pub late: bool,
}

impl Touched {
    fn player(player: PlayerId) -> Option<Touched> {
        Some(Touched { player: Some(player), ..Default::default() })
    }
}

/// The books over one export's period: folded from the first record on.
pub struct Books {
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    /// Which game sessions are kept: of the period, and of earlier buckets while a round of
    /// theirs is open (a late rollback corrects them); the others are dropped as the scan goes.
    rule: SessionRule,
    /// The bucket boundary (day or quarter of an hour) the scan is in.
    scan_step: Option<chrono::DateTime<chrono::Utc>>,
    /// Each player's session as the scan stands ([`SessionRule::Idle`]).
    live: HashMap<PlayerId, Live>,
    /// Sessions that played before the period and ended in it for want of play, found as a
    /// player came back ([`Books::endings`] adds those still waiting).
    ended: Vec<Live>,
    balances: HashMap<Account, Decimal>,
    open: HashMap<(RoundRef, PlayerId), OpenPart>,
    /// The period's movements per account (only accounts that moved).
    pub movements: BTreeMap<Account, Movements>,
    /// Game sessions of the period, and of the buckets before it still correctable.
    pub sessions: BTreeMap<SessionKey, Session>,
    /// Sessions of earlier buckets a late fact changed.
    pub corrected: std::collections::BTreeSet<SessionKey>,
    /// The first day each game type was played (DGOJ `FechaInicioOferta`).
    pub first_offered: BTreeMap<String, chrono::NaiveDate>,
}

/// What the books carry from one period into the next: their state after folding the chain up
/// to record `seq` (whose hash is `hash`), all but the period's own aggregates. A build resumes
/// from one ([`Books::resume`]) instead of folding the chain from its first record.
#[derive(Serialize, Deserialize)]
pub struct Carry {
    pub seq: u64,
    pub hash: [u8; 32],
    pub rule: SessionRule,
    scan_step: Option<chrono::DateTime<chrono::Utc>>,
    balances: Vec<(Account, Decimal)>,
    open: Vec<((RoundRef, PlayerId), OpenPart)>,
    live: Vec<Live>,
    sessions: Vec<Session>,
    first_offered: BTreeMap<String, chrono::NaiveDate>,
}

impl Books {
    /// The state to carry on, having folded the chain up to record `seq` (hash `hash`): sessions
    /// only where a round of theirs is open, or of the bucket the scan is in (what a scan from the
    /// first record would still hold).
    pub fn carry(&self, seq: u64, hash: [u8; 32]) -> Carry {
        let open = self.open_parts();
        let sessions = self
            .sessions
            .values()
            .filter(|s| {
                self.scan_step.is_some_and(|step| s.bucket.part >= step) || open.contains(&(s.player.clone(), s.bucket))
            })
            .cloned()
            .collect();
        Carry {
            seq,
            hash,
            rule: self.rule,
            scan_step: self.scan_step,
            balances: self.balances.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            open: self.open.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            live: self.live.values().cloned().collect(),
            sessions,
            first_offered: self.first_offered.clone(),
        }
    }

    /// The books of `period` as `carry` left them (folded up to its record).
    pub fn resume(period: &contracts::exports::ExportPeriod, carry: Carry) -> Books {
        let mut books = Books::new(period, carry.rule);
        books.scan_step = carry.scan_step;
        books.balances = carry.balances.into_iter().collect();
        books.open = carry.open.into_iter().collect();
        books.live = carry.live.into_iter().map(|l| (l.player.clone(), l)).collect();
        books.sessions =
            carry.sessions.into_iter().map(|s| ((s.player.clone(), s.game_id.clone(), s.bucket), s)).collect();
        books.first_offered = carry.first_offered;
        books
    }

    pub fn new(period: &contracts::exports::ExportPeriod, rule: SessionRule) -> Books {
        Books {
            start: period.start,
            end: period.end,
            rule,
            scan_step: None,
            live: HashMap::new(),
            ended: Vec::new(),
            balances: HashMap::new(),
            open: HashMap::new(),
            movements: BTreeMap::new(),
            sessions: BTreeMap::new(),
            corrected: Default::default(),
            first_offered: BTreeMap::new(),
        }
    }

    /// Moves `account`'s running balance by `delta`, having first opened its period movements
    /// (at the balance before) when the fact is of the period.
    fn moved(&mut self, account: &Account, delta: Decimal, in_period: bool) {
        if in_period {
            self.movements(account);
        }
        *self.balances.entry(account.clone()).or_default() += delta;
    }

    fn movements(&mut self, account: &Account) -> &mut Movements {
        let opening = self.balances.get(account).copied().unwrap_or_default();
        self.movements.entry(account.clone()).or_insert_with(|| Movements { opening, ..Default::default() })
    }

    fn session(&mut self, key: SessionKey, currency: &str, at: chrono::DateTime<chrono::Utc>) -> Option<&mut Session> {
        if self.rule == SessionRule::None {
            return None;
        }
        Some(self.sessions.entry(key.clone()).or_insert_with(|| Session {
            player: key.0.clone(),
            currency: currency.to_owned(),
            game_id: key.1.clone(),
            bucket: key.2,
            first: at,
            last: at,
            stakes: Decimal::ZERO,
            returned: Decimal::ZERO,
            wins: Decimal::ZERO,
            rounds: 0,
            open: 0,
        }))
    }

    /// A part closed: the sessions of the buckets it staked in have one open round fewer.
    fn closed(&mut self, player: &PlayerId, part: &OpenPart) {
        let mut buckets: Vec<Bucket> = part.bets.iter().map(|(_, b)| *b).collect();
        buckets.dedup();
        for bucket in buckets {
            if let Some(s) = self.sessions.get_mut(&(player.clone(), part.game_id.clone(), bucket)) {
                s.open = s.open.saturating_sub(1);
            }
        }
    }

    /// The boundary of the bucket `at` falls in: its day, or its quarter of an hour.
    fn step(&self, at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        use chrono::DurationRound;
        match self.rule {
            SessionRule::Idle => at.duration_trunc(super::QUARTER_HOUR).unwrap_or(at),
            _ => super::midnight(at.date_naive()),
        }
    }

    /// On a new bucket of the scan: drops the sessions of earlier buckets (before the period)
    /// that no open round can change any more. A session part with an open round keeps its
    /// other games too: a correction repeats the whole part.
    fn advance(&mut self, at: chrono::DateTime<chrono::Utc>) {
        let step = self.step(at);
        if self.rule == SessionRule::None || self.scan_step.is_some_and(|s| s >= step) {
            return;
        }
        self.scan_step = Some(step);
        let (start, open) = (self.start, self.open_parts());
        self.sessions
            .retain(|(player, _, b), _| b.part >= start || b.part >= step || open.contains(&(player.clone(), *b)));
    }

    /// The session parts a round is still open in: kept, whole, for a late correction.
    fn open_parts(&self) -> std::collections::HashSet<(PlayerId, Bucket)> {
        self.sessions.values().filter(|s| s.open > 0).map(|s| (s.player.clone(), s.bucket)).collect()
    }

    /// Whether `live` played before the period and ended in it for want of play: it is owed its
    /// ending there.
    fn ends_unplayed_in_period(&self, live: &Live) -> bool {
        live.last < self.start && (self.start..self.end).contains(&live.ends())
    }

    /// The bucket of `player`'s play of `game_id` at `at`, which counts as play: under
    /// [`SessionRule::Idle`] it continues their session, or ends it and starts another.
    fn played(
        &mut self,
        player: &PlayerId,
        currency: &str,
        game_id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Bucket {
        let part = self.step(at);
        if self.rule != SessionRule::Idle {
            return Bucket { session: part, part };
        }
        let live = match self.live.get_mut(player) {
            Some(live) if at < live.ends() => live,
            previous => {
                let fresh = Live {
                    player: player.clone(),
                    currency: currency.to_owned(),
                    game_id: game_id.to_owned(),
                    started: at,
                    last: at,
                };
                if let Some(old) = previous {
                    let old = std::mem::replace(old, fresh);
                    if self.ends_unplayed_in_period(&old) {
                        self.ended.push(old);
                    }
                } else {
                    self.live.insert(player.clone(), fresh);
                }
                self.live.get_mut(player).expect("just put")
            }
        };
        live.last = at;
        if live.game_id != game_id {
            live.game_id = game_id.to_owned();
        }
        Bucket { session: live.started, part }
    }

    /// Sessions that played before the period and ended in it for want of play: each is owed
    /// its ending (Spain: a closing registro, as nothing of it is played in the period).
    pub fn endings(&self) -> Vec<&Live> {
        let waiting = self.live.values().filter(|l| self.ends_unplayed_in_period(l));
        let mut endings: Vec<&Live> = self.ended.iter().chain(waiting).collect();
        endings.sort_by(|a, b| (&a.player, a.started).cmp(&(&b.player, b.started)));
        endings
    }

    /// Folds one fact at `at`; `in_period` when its event is in the export's range. What it
    /// touched in the period, for the export's index.
    pub fn fold(&mut self, fact: Fact, at: chrono::DateTime<chrono::Utc>, in_period: bool) -> Option<Touched> {
        let day = at.date_naive();
        self.advance(at);
        match fact {
            Fact::Deposit { player, currency, amount, method } => {
                let account = (player.clone(), currency);
                if in_period {
                    self.movements(&account).deposits.push(Operation { at, amount, method });
                }
                *self.balances.entry(account).or_default() += amount;
                if in_period {
                    Touched::player(player)
                } else {
                    None
                }
            }
            Fact::Withdrawal { player, currency, amount, method } => {
                let account = (player.clone(), currency);
                if in_period {
                    self.movements(&account).withdrawals.push(Operation { at, amount, method });
                }
                *self.balances.entry(account).or_default() -= amount;
                if in_period {
                    Touched::player(player)
                } else {
                    None
                }
            }
            Fact::Other { player, currency, amount, .. } => {
                let account = (player.clone(), currency);
                if in_period {
                    self.movements(&account).other += amount;
                }
                *self.balances.entry(account).or_default() += amount;
                if in_period {
                    Touched::player(player)
                } else {
                    None
                }
            }
            Fact::Stake { player, currency, amount, game: Game { round, game_id }, bet } => {
                let kind = game_type(&game_id);
                if !self.first_offered.contains_key(kind) {
                    self.first_offered.insert(kind.to_owned(), day);
                }
                let bucket = self.played(&player, &currency, &game_id, at);
                let part = self.open.entry((round, player.clone())).or_insert_with(|| OpenPart {
                    game_id: game_id.clone(),
                    bets: Vec::new(),
                    won_paid: Decimal::ZERO,
                });
                let new_round_here = !part.bets.iter().any(|(_, b)| *b == bucket);
                part.bets.push((bet, bucket));
                let account = (player.clone(), currency.clone());
                self.moved(&account, -amount, in_period);
                let key = (player.clone(), game_id, bucket);
                if let Some(s) = self.session(key.clone(), &currency, at) {
                    s.stakes += amount;
                    s.rounds += u64::from(new_round_here);
                    s.open += u32::from(new_round_here);
                    s.last = at;
                }
                if !in_period {
                    return None;
                }
                *self.movements(&account).stakes.entry(kind).or_default() += amount;
                Some(Touched { player: Some(player), session: Some(key), late: false })
            }
            Fact::Win { player, currency, amount, game, closing } => {
                let key = (game, player.clone());
                let game_id = self.open.get(&key).map_or_else(|| "wallet-api".to_owned(), |p| p.game_id.clone());
                if closing {
                    if let Some(part) = self.open.remove(&key) {
                        self.closed(&player, &part);
                    }
                } else if let Some(part) = self.open.get_mut(&key) {
                    part.won_paid += amount;
                }
                self.paid(player, currency, game_id, amount, at, in_period)
            }
            Fact::PartEnded { player, currency, game, won } => {
                let part = self.open.remove(&(game, player.clone()));
                if let Some(part) = &part {
                    self.closed(&player, part);
                }
                let (game_id, paid) =
                    part.map_or_else(|| ("unknown".to_owned(), Decimal::ZERO), |p| (p.game_id, p.won_paid));
                // The round's total win, less what `bet.won` already paid: the closing payout.
                let payout = (won - paid).max(Decimal::ZERO);
                self.paid(player, currency, game_id, payout, at, in_period)
            }
            Fact::StakeReturned { player, currency, amount, game, bet } => {
                let key = (game, player.clone());
                let (game_id, bet_bucket) = match self.open.get(&key) {
                    Some(part) => {
                        // A rollback names its bet; a void gives back the part's stakes, booked in
                        // the bucket its first bet was placed in.
                        let bucket_of_bet = match &bet {
                            Some(b) => part.bets.iter().find(|(x, _)| x == b).map(|(_, d)| *d),
                            None => part.bets.iter().map(|(_, d)| *d).min(),
                        };
                        let game_id = part.game_id.clone();
                        match bucket_of_bet {
                            Some(bucket) => (game_id, bucket),
                            None => {
                                let bucket = self.played(&player, &currency, &game_id, at);
                                (game_id, bucket)
                            }
                        }
                    }
                    // A round it knows nothing of: counted where the player is, as play (so the
                    // session it lands in is closed like any other).
                    None => ("unknown".to_owned(), self.played(&player, &currency, "unknown", at)),
                };
                let kind = game_type(&game_id);
                let account = (player.clone(), currency.clone());
                self.moved(&account, amount, in_period);
                if !in_period {
                    if let Some(s) = self.session((player, game_id, bet_bucket), &currency, at) {
                        s.returned += amount;
                    }
                    return None;
                }
                *self.movements(&account).stakes_returned.entry(kind).or_default() += amount;
                // A stake given back annuls its bet: it belongs to the bet's session, which a
                // bet of an earlier bucket (already reported) means correcting.
                let key = (player, game_id, bet_bucket);
                let late = self.start > bet_bucket.part;
                // A stake given back is not play: it moves no session's last play (so the books
                // are the same whether this was folded in its period or before another's).
                if let Some(s) = self.session(key.clone(), &currency, at) {
                    s.returned += amount;
                    if late {
                        self.corrected.insert(key.clone());
                    }
                }
                Some(Touched { player: Some(key.0.clone()), session: Some(key), late })
            }
        }
    }

    fn paid(
        &mut self,
        player: PlayerId,
        currency: String,
        game_id: String,
        amount: Decimal,
        at: chrono::DateTime<chrono::Utc>,
        in_period: bool,
    ) -> Option<Touched> {
        let account = (player.clone(), currency.clone());
        self.moved(&account, amount, in_period);
        let bucket = self.played(&player, &currency, &game_id, at);
        let key = (player, game_id.clone(), bucket);
        let session = self.session(key.clone(), &currency, at);
        if let Some(s) = session {
            s.wins += amount;
            s.last = at;
        }
        if !in_period {
            return None;
        }
        *self.movements(&account).wins.entry(game_type(&game_id)).or_default() += amount;
        Some(Touched { player: Some(key.0.clone()), session: Some(key), late: false })
    }

    /// The period's stakes, returned stakes and wins per game type, over every account.
    pub fn by_game_type(&self) -> BTreeMap<&'static str, (Decimal, Decimal, Decimal)> {
        let mut by_type: BTreeMap<&'static str, (Decimal, Decimal, Decimal)> = BTreeMap::new();
        for m in self.movements.values() {
            for (k, v) in &m.stakes {
                by_type.entry(k).or_default().0 += *v;
            }
            for (k, v) in &m.stakes_returned {
                by_type.entry(k).or_default().1 += *v;
            }
            for (k, v) in &m.wins {
                by_type.entry(k).or_default().2 += *v;
            }
        }
        by_type
    }

    /// Every account's balance at the end of what was folded (players' funds held).
    pub fn balances_total(&self) -> Decimal {
        self.balances.values().sum()
    }

    /// Sessions of the period (their parts played in it).
    pub fn period_sessions(&self) -> impl Iterator<Item = &Session> {
        let (start, end) = (self.start, self.end);
        self.sessions.values().filter(move |s| s.bucket.part >= start && s.bucket.part < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exports::facts::{Fact, Game, RoundRef};

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// A round staked in on day one and voided on day two: the stake comes back in day two's
    /// movements, and corrects day one's session (as a rollback of the bet would).
    #[test]
    fn a_void_after_midnight_corrects_the_session_of_its_bets() {
        let player = PlayerId::new("es-v").unwrap();
        let round = RoundRef { provider: "demo".into(), round: "r1".into() };
        let mut books = Books::new(&crate::exports::parse_period("2026-11-30").unwrap(), SessionRule::Daily);
        let money = |amount: i64| Decimal::from(amount);
        let deposit =
            Fact::Deposit { player: player.clone(), currency: "EUR".into(), amount: money(10), method: "card".into() };
        books.fold(deposit, at("2026-11-29T09:00:00Z"), false);
        let game = Game { round: round.clone(), game_id: "slot-1".into() };
        let stake =
            Fact::Stake { player: player.clone(), currency: "EUR".into(), amount: money(3), game, bet: "b1".into() };
        books.fold(stake, at("2026-11-29T23:59:00Z"), false);
        let void = Fact::StakeReturned {
            player: player.clone(),
            currency: "EUR".into(),
            amount: money(3),
            game: round.clone(),
            bet: None,
        };
        let touched = books.fold(void, at("2026-11-30T00:10:00Z"), true).unwrap();
        let ended = Fact::PartEnded { player: player.clone(), currency: "EUR".into(), game: round, won: Decimal::ZERO };
        books.fold(ended, at("2026-11-30T00:10:00Z"), true);
        let day_one = at("2026-11-29T00:00:00Z");
        assert!(touched.late);
        let bucket = Bucket { session: day_one, part: day_one };
        assert!(books.corrected.contains(&(player.clone(), "slot-1".into(), bucket)));
        let m = &books.movements[&(player, "EUR".to_owned())];
        assert_eq!((m.opening, m.returned(), m.closing()), (money(7), money(3), money(10)));
    }

    /// Spain's sessions: play continues a session until [`IDLE`] passes without any; each
    /// quarter of an hour reports its part; a session that ends in a quarter it did not play in
    /// is owed its ending there; a bet given back after its part was reported corrects that part.
    #[test]
    fn a_session_ends_after_a_pause_and_is_reported_in_quarter_hours() {
        let ana = PlayerId::new("es-ana").unwrap();
        let money = |amount: i64| Decimal::from(amount);
        let round = |r: &str| RoundRef { provider: "demo".into(), round: r.into() };
        let stake = |r: &str, bet: &str| Fact::Stake {
            player: ana.clone(),
            currency: "EUR".into(),
            amount: money(2),
            game: Game { round: round(r), game_id: "slot-1".into() },
            bet: bet.into(),
        };
        let win = |r: &str| Fact::Win {
            player: ana.clone(),
            currency: "EUR".into(),
            amount: money(5),
            game: round(r),
            closing: true,
        };
        let rollback = |r: &str, bet: &str| Fact::StakeReturned {
            player: ana.clone(),
            currency: "EUR".into(),
            amount: money(2),
            game: round(r),
            bet: Some(bet.into()),
        };
        let play = [
            (stake("r1", "b1"), "2026-11-30T10:05:00Z"),
            (win("r1"), "2026-11-30T10:12:00Z"),
            (stake("r2", "b2"), "2026-11-30T10:20:00Z"),
            (rollback("r2", "b2"), "2026-11-30T10:50:00Z"),
            (stake("r3", "b3"), "2026-11-30T11:30:00Z"),
        ];
        let books_of = |label: &str| {
            let period = crate::exports::parse_period(label).unwrap();
            let mut books = Books::new(&period, SessionRule::Idle);
            let touched: Vec<Option<Touched>> = play
                .iter()
                .filter(|(_, t)| at(t) < period.end)
                .map(|(fact, t)| books.fold(fact.clone(), at(t), at(t) >= period.start))
                .collect();
            (books, touched)
        };
        let started = at("2026-11-30T10:05:00Z");
        let part = |p: &str| Bucket { session: started, part: at(p) };

        let (first, _) = books_of("2026-11-30T10:00");
        let parts: Vec<&Session> = first.period_sessions().collect();
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].bucket, parts[0].stakes, parts[0].wins),
            (part("2026-11-30T10:00:00Z"), money(2), money(5))
        );

        let (second, _) = books_of("2026-11-30T10:15");
        let parts: Vec<&Session> = second.period_sessions().collect();
        assert_eq!(parts[0].bucket, part("2026-11-30T10:15:00Z"), "the same session, its second part");
        assert!(second.endings().is_empty());

        // Nothing played from 10:20 on: the session ends at 10:30, in a quarter it did not play in.
        let (third, _) = books_of("2026-11-30T10:30");
        assert_eq!(third.period_sessions().count(), 0);
        let endings = third.endings();
        assert_eq!((endings.len(), endings[0].started, endings[0].last), (1, started, at("2026-11-30T10:20:00Z")));

        // The rollback at 10:50 gives back a bet of the 10:15 part: a correction of it.
        let (fourth, touched) = books_of("2026-11-30T10:45");
        let t = touched.last().unwrap().as_ref().unwrap();
        assert!(t.late);
        assert_eq!(t.session.as_ref().unwrap().2, part("2026-11-30T10:15:00Z"));
        let corrected = &fourth.sessions[t.session.as_ref().unwrap()];
        assert_eq!((corrected.stakes, corrected.returned), (money(2), money(2)));
        assert!(fourth.endings().is_empty(), "ended in the quarter before");

        // Back at 11:30: a new session.
        let (fifth, _) = books_of("2026-11-30T11:30");
        let parts: Vec<&Session> = fifth.period_sessions().collect();
        assert_eq!(parts[0].bucket.session, at("2026-11-30T11:30:00Z"));
    }
}
