//! The live one-screen status of `drill up`: each process up or down, and its request rate and
//! errors, read from its own `/metrics` once a second (what an ops dashboard would scrape).

use crate::load::Progress;
use crate::platform::{Platform, Role};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

/// Request counters a role exposes: their sum is its request count.
fn counters(role: &Role) -> &'static [&'static str] {
    match role {
        Role::Control => &["global_control_http_requests_total"],
        Role::Router => &["router_forwarded_total", "router_refused_total"],
        Role::Primary(_) | Role::Standby(_) => &["cell_http_requests_total"],
        Role::Sandbox => &[],
    }
}

/// Routes left out of request counts.
const OPS_ROUTES: &[&str] = &["/readyz", "/healthz", "/metrics"];

/// Totals read from one `/metrics` page.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub requests: f64,
    /// Answers with a 5xx `status` label.
    pub server_errors: f64,
    /// Answers with a 4xx `status` label (refusals: most are expected, e.g. 451s).
    pub client_errors: f64,
}

/// Sums the counters named in `names` from an OpenMetrics text page.
pub fn parse_totals(text: &str, names: &[&str]) -> Totals {
    let mut t = Totals::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap_or_default();
        // Health checks and scrapes (the router's, the status screen's own) are not traffic.
        if !names.contains(&name) || OPS_ROUTES.iter().any(|r| series.contains(&format!("route=\"{r}\""))) {
            continue;
        }
        let Ok(value) = value.parse::<f64>() else { continue };
        t.requests += value;
        let status = series
            .split("status=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|s| s.parse::<u16>().ok());
        // The router's own refusals carry a code, not a status: 503 when no cell can serve,
        // otherwise 4xx (451, 429, 401, 404).
        let status = status.or_else(|| {
            (name == "router_refused_total").then_some(if series.contains("CELL_UNAVAILABLE") { 503 } else { 400 })
        });
        match status {
            Some(500..=599) => t.server_errors += value,
            Some(400..=499) => t.client_errors += value,
            _ => {}
        }
    }
    t
}

/// One process's line on the screen.
struct Line {
    name: String,
    pid: Option<u32>,
    up: bool,
    starts: u32,
    exited: Option<String>,
    url: String,
    totals: Option<Totals>,
    /// A replicating cell's part: following and lag, or its standbys.
    replica: Option<String>,
}

/// The screen and what it remembers between refreshes (to turn totals into rates).
pub struct Screen {
    previous: BTreeMap<Role, (Instant, Totals)>,
    pub header: Vec<String>,
}

impl Screen {
    pub fn new(header: Vec<String>) -> Screen {
        Screen { previous: BTreeMap::new(), header }
    }

    /// Reads every process's state and metrics, and renders the screen as text.
    pub async fn render(&mut self, platform: &mut Platform, traffic: Option<(&Progress, &str)>) -> String {
        let roles: Vec<Role> = platform.processes.keys().cloned().collect();
        let mut lines = Vec::new();
        for role in &roles {
            let url = platform.url(role);
            let Ok(process) = platform.process(role) else { continue };
            let up = process.is_up();
            let (pid, starts, exited) = (process.pid(), process.starts, process.exited.clone());
            let page = match up {
                true => match platform.get(role, "/metrics").await {
                    Ok(reply) if reply.status == 200 => Some(reply.text()),
                    _ => None,
                },
                false => None,
            };
            let totals = page.as_deref().map(|text| parse_totals(text, counters(role)));
            let replica = page.as_deref().and_then(replication_state);
            let line = Line { name: role.to_string(), pid, up, starts, exited, url, totals, replica };
            lines.push((role.clone(), line));
        }
        let now = Instant::now();
        let mut out = String::new();
        for h in &self.header {
            let _ = writeln!(out, "{h}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<16} {:>8}  {:<22} {:<26} {:>9} {:>7} {:>10} {:>10}",
            "process", "pid", "state", "url", "req/s", "5xx/s", "4xx total", "5xx total"
        );
        for (role, line) in lines {
            let state = match (line.up, &line.exited) {
                (true, _) if line.replica.is_some() => line.replica.clone().unwrap_or_default(),
                (true, _) if line.starts > 1 => format!("up (started {}x)", line.starts),
                (true, _) => "up".to_owned(),
                (false, Some(how)) => format!("DOWN: {how}"),
                (false, None) => "DOWN".to_owned(),
            };
            let (rate, errors_rate, client, server) = match line.totals {
                Some(t) => {
                    let (rate, err) = match self.previous.get(&role) {
                        Some((at, before)) => {
                            let secs = now.duration_since(*at).as_secs_f64().max(0.001);
                            (
                                format!("{:.0}", (t.requests - before.requests).max(0.0) / secs),
                                format!("{:.1}", (t.server_errors - before.server_errors).max(0.0) / secs),
                            )
                        }
                        None => ("-".to_owned(), "-".to_owned()),
                    };
                    self.previous.insert(role.clone(), (now, t));
                    (rate, err, format!("{:.0}", t.client_errors), format!("{:.0}", t.server_errors))
                }
                None => {
                    self.previous.remove(&role);
                    ("-".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned())
                }
            };
            let pid = line.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(
                out,
                "{:<16} {:>8}  {:<22} {:<26} {:>9} {:>7} {:>10} {:>10}",
                line.name,
                pid,
                truncate(&state, 22),
                line.url,
                rate,
                errors_rate,
                client,
                server
            );
        }
        if let Some((p, flags)) = traffic {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "traffic: {} players registered, {} deposits, {} rounds; {} unlicensed attempts refused (451)",
                p.registered, p.deposits, p.rounds, p.unlicensed_refused
            );
            let _ = writeln!(
                out,
                "         {} writes acknowledged, {} refused, {} without an answer (retried with their key: {} waiting); \
                 {} reads ({} failed); licence violations: {}",
                p.acked,
                p.refused,
                p.unknown,
                p.parked,
                p.reads_ok + p.reads_failed,
                p.reads_failed,
                p.violations
            );
            let _ = writeln!(out, "flags:   {flags}");
        }
        out
    }
}

/// A replicating cell's state from its `/metrics`: a standby's lag, a primary's standbys, a fence.
fn replication_state(text: &str) -> Option<String> {
    let gauge =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<i64>().ok());
    if gauge("cell_fenced") == Some(1) {
        return Some("up, FENCED".into());
    }
    let lag = gauge("cell_replication_lag_versions")?;
    // Only a standby reports whether it follows.
    Some(match (gauge("cell_replication_following"), gauge("cell_replication_standbys")) {
        (Some(1), _) => format!("following, lag {lag}"),
        (Some(_), _) => "standby, NOT following".into(),
        (None, Some(n)) if n > 0 => format!("up, {n} standby, lag {lag}"),
        (None, _) => "up, NO standby".into(),
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        text.chars().take(max - 1).chain(std::iter::once('…')).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_requests_and_split_errors_by_status() {
        let page = "# HELP cell_http_requests HTTP requests\n\
                    # TYPE cell_http_requests counter\n\
                    cell_http_requests_total{route=\"/players\",status=\"201\"} 10\n\
                    cell_http_requests_total{route=\"/wallet/credit\",status=\"422\"} 2\n\
                    cell_http_requests_total{route=\"/wallet/credit\",status=\"503\"} 3\n\
                    cell_http_requests_total{route=\"/readyz\",status=\"503\"} 7\n\
                    cell_wallet_operations_total{op=\"credit\",outcome=\"ok\"} 99\n\
                    # EOF\n";
        let t = parse_totals(page, &["cell_http_requests_total"]);
        assert_eq!((t.requests, t.client_errors, t.server_errors), (15.0, 2.0, 3.0));
    }
}
