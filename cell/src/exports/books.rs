//! The books an export is compiled from: facts folded, in chain order, into running balances
//! (from the first record, so a period's opening balance is what every earlier event left), and
//! into the period's aggregates: per player, per game session, per game type. State kept between
//! events is bounded by players and open rounds, never by the number of rounds.

use super::facts::{Fact, Game, RoundRef};
use contracts::PlayerId;
use rust_decimal::Decimal;
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

/// A player's play of one game on one day: the regulator's game session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub player: PlayerId,
    pub currency: String,
    pub game_id: String,
    pub day: chrono::NaiveDate,
    pub first: chrono::DateTime<chrono::Utc>,
    pub last: chrono::DateTime<chrono::Utc>,
    pub stakes: Decimal,
    pub returned: Decimal,
    pub wins: Decimal,
    /// Rounds played (distinct rounds staked in).
    pub rounds: u64,
    /// Rounds staked in this day whose part is still open: while there are, a rollback may
    /// still change the session (it is then kept for a correction).
    open: u32,
}

/// Where a session is kept: `(player, game, day)`.
pub type SessionKey = (PlayerId, String, chrono::NaiveDate);

/// A player's part of a round still open: its game, its bets' days and the wins already paid.
#[derive(Debug, Clone)]
struct OpenPart {
    game_id: String,
    bets: Vec<(String, chrono::NaiveDate)>,
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
    /// Whether game sessions are kept (JUC): of the period, and of earlier days while a round of
    /// theirs is open (a late rollback corrects them); the others are dropped as the scan goes.
    keep_sessions: bool,
    /// The day of the last fact folded.
    scan_day: Option<chrono::NaiveDate>,
    balances: HashMap<Account, Decimal>,
    open: HashMap<(RoundRef, PlayerId), OpenPart>,
    /// The period's movements per account (only accounts that moved).
    pub movements: BTreeMap<Account, Movements>,
    /// Game sessions of the period, and of the days before it still correctable.
    pub sessions: BTreeMap<SessionKey, Session>,
    /// Sessions of earlier days a late fact changed.
    pub corrected: std::collections::BTreeSet<SessionKey>,
    /// The first day each game type was played (DGOJ `FechaInicioOferta`).
    pub first_offered: BTreeMap<&'static str, chrono::NaiveDate>,
}

impl Books {
    pub fn new(start: chrono::NaiveDate, keep_sessions: bool) -> Books {
        Books {
            start: start.and_time(chrono::NaiveTime::MIN).and_utc(),
            keep_sessions,
            scan_day: None,
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
        if !self.keep_sessions {
            return None;
        }
        Some(self.sessions.entry(key.clone()).or_insert_with(|| Session {
            player: key.0.clone(),
            currency: currency.to_owned(),
            game_id: key.1.clone(),
            day: key.2,
            first: at,
            last: at,
            stakes: Decimal::ZERO,
            returned: Decimal::ZERO,
            wins: Decimal::ZERO,
            rounds: 0,
            open: 0,
        }))
    }

    /// A part closed: the sessions of the days it staked in have one open round fewer.
    fn closed(&mut self, player: &PlayerId, part: &OpenPart) {
        let mut days: Vec<chrono::NaiveDate> = part.bets.iter().map(|(_, d)| *d).collect();
        days.dedup();
        for day in days {
            if let Some(s) = self.sessions.get_mut(&(player.clone(), part.game_id.clone(), day)) {
                s.open = s.open.saturating_sub(1);
            }
        }
    }

    /// On a new day of the scan: drops the sessions of earlier days (before the period) that no
    /// open round can change any more.
    fn new_day(&mut self, day: chrono::NaiveDate) {
        if self.scan_day.is_some_and(|d| d >= day) {
            return;
        }
        self.scan_day = Some(day);
        let start = self.start.date_naive();
        self.sessions.retain(|(_, _, d), s| *d >= start || *d >= day || s.open > 0);
    }

    /// Folds one fact at `at`; `in_period` when its event is in the export's range. What it
    /// touched in the period, for the export's index.
    pub fn fold(&mut self, fact: Fact, at: chrono::DateTime<chrono::Utc>, in_period: bool) -> Option<Touched> {
        let day = at.date_naive();
        self.new_day(day);
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
                self.first_offered.entry(kind).or_insert(day);
                let part = self.open.entry((round, player.clone())).or_insert_with(|| OpenPart {
                    game_id: game_id.clone(),
                    bets: Vec::new(),
                    won_paid: Decimal::ZERO,
                });
                let new_round_today = !part.bets.iter().any(|(_, d)| *d == day);
                part.bets.push((bet, day));
                let account = (player.clone(), currency.clone());
                self.moved(&account, -amount, in_period);
                let key = (player.clone(), game_id, day);
                if let Some(s) = self.session(key.clone(), &currency, at) {
                    s.stakes += amount;
                    s.rounds += u64::from(new_round_today);
                    s.open += u32::from(new_round_today);
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
                let (game_id, bet_day) = match self.open.get(&key) {
                    Some(part) => {
                        // A rollback names its bet; a void gives back the part's stakes, booked on
                        // the day its first bet was placed.
                        let day_of_bet = match &bet {
                            Some(b) => part.bets.iter().find(|(x, _)| x == b).map(|(_, d)| *d),
                            None => part.bets.iter().map(|(_, d)| *d).min(),
                        };
                        (part.game_id.clone(), day_of_bet.unwrap_or(day))
                    }
                    None => ("unknown".to_owned(), day),
                };
                let kind = game_type(&game_id);
                let account = (player.clone(), currency.clone());
                self.moved(&account, amount, in_period);
                if !in_period {
                    if let Some(s) = self.session((player, game_id, bet_day), &currency, at) {
                        s.returned += amount;
                    }
                    return None;
                }
                *self.movements(&account).stakes_returned.entry(kind).or_default() += amount;
                // A stake given back annuls its bet: it belongs to the bet's session, which a
                // bet of an earlier day means correcting.
                let key = (player, game_id, bet_day);
                let late = self.start.date_naive() > bet_day;
                if let Some(s) = self.session(key.clone(), &currency, at) {
                    s.returned += amount;
                    if !late {
                        s.last = at;
                    }
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
        let key = (player, game_id.clone(), at.date_naive());
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

    /// Sessions of the period (played on its days).
    pub fn period_sessions(&self, end: chrono::NaiveDate) -> impl Iterator<Item = &Session> {
        let start = self.start.date_naive();
        self.sessions.values().filter(move |s| s.day >= start && s.day < end)
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
        let day_two = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let mut books = Books::new(day_two, true);
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
        let day_one = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert!(touched.late);
        assert!(books.corrected.contains(&(player.clone(), "slot-1".into(), day_one)));
        let m = &books.movements[&(player, "EUR".to_owned())];
        assert_eq!((m.opening, m.returned(), m.closing()), (money(7), money(3), money(10)));
    }
}
