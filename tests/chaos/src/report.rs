//! A drill's report: what ran, what was broken and when, what was checked, and the verdict. It is
//! written for the ops engineer reading it after a drill (and for the CI log when a test fails).

use crate::load::Progress;
use chrono::{DateTime, Utc};
use std::fmt;

/// Problems printed per check; the rest are counted.
const PROBLEMS_PRINTED_MAX: usize = 8;

/// One invariant's result.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub problems: Vec<String>,
    /// How many problems there were (may exceed the ones kept).
    pub count: u64,
    /// What was looked at, e.g. "5 cell processes, 5 currency books".
    pub detail: String,
    /// Why the check could not run today (not a failure).
    pub skipped: Option<String>,
}

impl Check {
    pub fn new(name: &str, problems: Vec<String>, detail: String) -> Check {
        let count = problems.len() as u64;
        Check { name: name.to_owned(), problems, count, detail, skipped: None }
    }

    pub fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check::new(name, Vec::new(), detail.into())
    }

    pub fn skipped(name: &str, why: impl Into<String>) -> Check {
        Check { skipped: Some(why.into()), ..Check::new(name, Vec::new(), String::new()) }
    }

    /// A check that holds when `ok`, with `detail` either way.
    pub fn holds(name: &str, ok: bool, detail: impl Into<String>) -> Check {
        let detail = detail.into();
        if ok {
            Check::pass(name, detail)
        } else {
            Check::new(name, vec![detail.clone()], detail)
        }
    }

    pub fn fail(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
        self.count += 1;
    }

    pub fn ok(&self) -> bool {
        self.count == 0 && self.problems.is_empty()
    }
}

/// A fault injected, or a step of the drill worth timing.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// Milliseconds since the drill started.
    pub offset_ms: i64,
    pub what: String,
    /// Whether it is a fault (a kill, a cut) rather than a recovery step.
    pub fault: bool,
}

/// The whole report of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub quick: bool,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub timeline: Vec<Event>,
    pub checks: Vec<Check>,
    /// What the reader should know that is neither a fault nor an invariant.
    pub notes: Vec<String>,
    pub load: Progress,
    /// Where the processes' logs are (kept only with `--keep`).
    pub data_dir: Option<String>,
    /// The drill itself could not run to the end (setup failed): not an invariant result.
    pub aborted: Option<String>,
}

impl Report {
    pub fn new(scenario: &str, seed: u64, quick: bool) -> Report {
        Report {
            scenario: scenario.to_owned(),
            seed,
            quick,
            started: Utc::now(),
            finished: None,
            timeline: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
            load: Progress::default(),
            data_dir: None,
            aborted: None,
        }
    }

    fn log(&mut self, what: String, fault: bool) {
        let at = Utc::now();
        let offset_ms = (at - self.started).num_milliseconds();
        self.timeline.push(Event { at, offset_ms, what, fault });
    }

    /// A fault, timestamped now.
    pub fn fault(&mut self, what: impl Into<String>) {
        self.log(what.into(), true);
    }

    /// A step of the drill (restart, heal, load stopped...), timestamped now.
    pub fn step(&mut self, what: impl Into<String>) {
        self.log(what.into(), false);
    }

    pub fn check(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The faults injected, in order.
    pub fn faults(&self) -> Vec<&str> {
        self.timeline.iter().filter(|e| e.fault).map(|e| e.what.as_str()).collect()
    }

    /// How long the drill took, once finished.
    pub fn seconds(&self) -> f64 {
        self.finished.map(|end| (end - self.started).num_milliseconds()).unwrap_or(0) as f64 / 1000.0
    }

    /// Passed: the drill ran to the end and no invariant failed.
    pub fn passed(&self) -> bool {
        self.aborted.is_none() && self.checks.iter().all(Check::ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== drill {} ==", self.scenario)?;
        writeln!(
            f,
            "seed {}{}   started {}   (rerun: drill run {}{} --seed {})",
            self.seed,
            if self.quick { " (quick)" } else { "" },
            self.started.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            self.scenario,
            if self.quick { " --quick" } else { "" },
            self.seed
        )?;
        writeln!(f, "timeline:")?;
        for e in &self.timeline {
            writeln!(
                f,
                "  {} +{:>6} ms  {} {}",
                e.at.format("%H:%M:%S%.3f"),
                e.offset_ms,
                if e.fault { "FAULT" } else { "     " },
                e.what
            )?;
        }
        let l = &self.load;
        writeln!(
            f,
            "load: {} writes acknowledged; {} refused with a code (by code in a note); {} with no answer \
             when sent (then sent again with their key); {} reads, {} of them with no answer (sent while a process \
             was down or cut off; reads are not retried); {} players registered, {} deposits, {} rounds; {} \
             unlicensed attempts refused (451)",
            l.acked,
            l.refused,
            l.unknown,
            l.reads_ok + l.reads_failed,
            l.reads_failed,
            l.registered,
            l.deposits,
            l.rounds,
            l.unlicensed_refused
        )?;
        writeln!(f, "invariants:")?;
        for c in &self.checks {
            let verdict = match (&c.skipped, c.ok()) {
                (Some(_), _) => "SKIP",
                (None, true) => "PASS",
                (None, false) => "FAIL",
            };
            write!(f, "  [{verdict}] {}", c.name)?;
            match &c.skipped {
                Some(why) => writeln!(f, ": {why}")?,
                None if c.detail.is_empty() => writeln!(f)?,
                None => writeln!(f, " ({})", c.detail)?,
            }
            for p in c.problems.iter().take(PROBLEMS_PRINTED_MAX) {
                writeln!(f, "         - {p}")?;
            }
            if c.count as usize > PROBLEMS_PRINTED_MAX {
                writeln!(f, "         ... {} problems in all", c.count)?;
            }
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if let Some(dir) = &self.data_dir {
            writeln!(f, "data and logs kept in {dir}")?;
        }
        if let Some(why) = &self.aborted {
            writeln!(f, "ABORTED: {why}")?;
        }
        let took = self.finished.map(|end| (end - self.started).num_milliseconds()).unwrap_or(0);
        writeln!(f, "outcome: {} ({:.1} s)", if self.passed() { "PASSED" } else { "FAILED" }, took as f64 / 1000.0)
    }
}

/// The closing table of `drill run all`: one line per drill.
pub fn summary(reports: &[Report]) -> String {
    let mut out = String::from("== summary ==\n");
    out.push_str(&format!("{:<20} {:<8} {:>9}  {:>5}  faults injected\n", "drill", "outcome", "seconds", "skips"));
    for r in reports {
        let outcome = if r.passed() { "PASSED" } else { "FAILED" };
        let skips = r.checks.iter().filter(|c| c.skipped.is_some()).count();
        let faults = r.faults();
        let faults = if faults.is_empty() { "none".to_owned() } else { faults.join("; ") };
        out.push_str(&format!("{:<20} {outcome:<8} {:>9.1}  {skips:>5}  {faults}\n", r.scenario, r.seconds()));
    }
    out
}
