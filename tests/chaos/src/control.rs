//! The control API as product and ops use it in drills: flip a flag, and see which cells have
//! applied which version of the change log (`GET /cells`).

use crate::client::Http;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The flag drills and `drill up --traffic` flip.
pub const DRILL_FLAG: &str = "drill-banner";

/// A client of one control plane with one token.
#[derive(Clone)]
pub struct ControlApi {
    pub http: Http,
    pub base: String,
    pub token: String,
}

/// What `GET /cells` says: the change log's version, and each connected cell's acked version.
#[derive(Debug, Clone, Default)]
pub struct SyncState {
    pub version: u64,
    pub acked: BTreeMap<String, u64>,
}

impl ControlApi {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let bearer = format!("Bearer {}", self.token);
        let reply = self
            .http
            .send(
                None,
                method,
                &format!("{}{path}", self.base),
                &[("authorization", bearer.as_str())],
                body.map(|b| b.to_string().into_bytes()),
            )
            .await?;
        Ok((reply.status, reply.json()))
    }

    /// A new API token holding `role` (`regulator:ES`): its secret.
    pub async fn token_for(&self, role: &str) -> anyhow::Result<String> {
        let (status, answer) =
            self.call("POST", "/tokens", Some(json!({ "name": format!("drill {role}"), "roles": [role] }))).await?;
        anyhow::ensure!(status == 201, "POST /tokens for {role}: {status} {answer}");
        Ok(answer["token"].as_str().unwrap_or_default().to_owned())
    }

    /// A GET with another API token: status and body bytes.
    pub async fn call_raw(&self, method: &str, path: &str, token: &str) -> anyhow::Result<(u16, bytes::Bytes)> {
        let bearer = format!("Bearer {token}");
        let url = format!("{}{path}", self.base);
        let reply = self.http.send(None, method, &url, &[("authorization", bearer.as_str())], None).await?;
        Ok((reply.status, reply.body))
    }

    /// Sets the boolean flag `key` on or off everywhere, saying why. Returns the new change-log
    /// version.
    pub async fn flag_set(&self, key: &str, on: bool, reason: &str) -> anyhow::Result<u64> {
        let body = json!({
            "definition": {
                "kind": "boolean", "variants": {"on": true, "off": false}, "offVariant": "off",
                "fallthrough": {"variant": if on { "on" } else { "off" }}, "enabled": true, "rules": []
            },
            "reason": reason
        });
        let (status, answer) = self.call("PUT", &format!("/flags/{key}"), Some(body)).await?;
        if status != 200 {
            bail!("PUT /flags/{key} answered {status}: {answer}");
        }
        Ok(self.sync_state().await?.version)
    }

    /// Puts the game providers of `config/providers` in the catalog, with their games certified
    /// and offered in every jurisdiction, unless the catalog already has games (it is then the
    /// operator's). The demo studio's certificates, so a newcomer's lobby is not empty. Returns
    /// how many games were put.
    pub async fn catalog_seed_demo(&self, providers_dir: &std::path::Path) -> anyhow::Result<usize> {
        let (status, games) = self.call("GET", "/catalog/games", None).await?;
        if status != 200 {
            bail!("GET /catalog/games answered {status}: {games}");
        }
        if games.as_array().is_some_and(|g| !g.is_empty()) {
            return Ok(0);
        }
        let every: Vec<String> = contracts::Jurisdiction::ALL.iter().map(|j| j.to_string()).collect();
        let mut put = 0;
        let mut paths: Vec<_> = std::fs::read_dir(providers_dir)
            .with_context(|| format!("read {}", providers_dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
            let file: toml::Value = text.parse().with_context(|| format!("parse {}", path.display()))?;
            let id = file.get("id").and_then(|v| v.as_str()).with_context(|| format!("{}: no id", path.display()))?;
            let provider = json!({"provider": {"id": id, "name": title(id)}, "reason": "drill up: the demo catalog"});
            let (status, answer) = self.call("PUT", &format!("/catalog/providers/{id}"), Some(provider)).await?;
            if status != 200 {
                bail!("PUT /catalog/providers/{id} answered {status}: {answer}");
            }
            for game in file.get("games").and_then(|g| g.as_array()).into_iter().flatten() {
                let (Some(game_id), Some(kind)) =
                    (game.get("id").and_then(|v| v.as_str()), game.get("type").and_then(|v| v.as_str()))
                else {
                    continue;
                };
                let mut body = json!({
                    "id": game_id, "providerId": id, "name": title(game_id), "type": kind, "rtp": "96.50",
                    "certifiedJurisdictions": every, "availableJurisdictions": every
                });
                if let Some(m) = game.get("max_multiplier").and_then(|v| v.as_str()) {
                    body["maxMultiplier"] = json!(m);
                }
                let request = json!({"game": body, "reason": "drill up: the demo catalog"});
                let (status, answer) = self.call("PUT", &format!("/catalog/games/{game_id}"), Some(request)).await?;
                if status != 200 {
                    bail!("PUT /catalog/games/{game_id} answered {status}: {answer}");
                }
                put += 1;
            }
        }
        Ok(put)
    }

    pub async fn sync_state(&self) -> anyhow::Result<SyncState> {
        let (status, answer) = self.call("GET", "/cells", None).await?;
        if status != 200 {
            bail!("GET /cells answered {status}: {answer}");
        }
        let version = answer["version"].as_u64().context("GET /cells: no version")?;
        let mut acked = BTreeMap::new();
        for c in answer["cells"].as_array().into_iter().flatten() {
            let cell = c["cell"].as_str().unwrap_or_default().to_owned();
            let v = c["ackedVersion"].as_u64().unwrap_or(0);
            // A cell may briefly hold two sessions (a reconnect): the newest ack counts.
            let entry = acked.entry(cell).or_insert(0);
            *entry = (*entry).max(v);
        }
        Ok(SyncState { version, acked })
    }

    /// The last export of each jurisdiction global-control schedules, as one status line:
    /// `ES es-CJD-2026-12-05 built (12 events)`, or where the newest stands.
    pub async fn exports_line(&self) -> String {
        let mut parts = Vec::new();
        for j in ["UK", "MT", "DK", "SE", "ES"] {
            let Ok((200, answer)) = self.call("GET", &format!("/exports/{j}"), None).await else {
                parts.push(format!("{j} unreachable"));
                continue;
            };
            let exports = answer["exports"].as_array().cloned().unwrap_or_default();
            let built = exports
                .iter()
                .filter(|e| e["state"] == "built")
                .max_by_key(|e| e["export"]["manifest"]["builtAt"].as_str().map(str::to_owned));
            let newest = exports.first();
            match (built, newest) {
                (Some(b), _) => parts.push(format!(
                    "{j} {} built ({} events)",
                    b["export"]["manifest"]["exportId"].as_str().unwrap_or("?"),
                    b["export"]["manifest"]["eventCount"]
                )),
                (None, Some(n)) => parts.push(format!(
                    "{j} {} {} {}: {}",
                    n["type"].as_str().unwrap_or("?"),
                    n["period"].as_str().unwrap_or("?"),
                    n["state"].as_str().unwrap_or("?"),
                    n["lastError"].as_str().unwrap_or("-").chars().take(60).collect::<String>()
                )),
                (None, None) => parts.push(format!("{j} none scheduled")),
            }
        }
        format!("exports: {}", parts.join("; "))
    }

    /// Waits until every cell in `cells` has acked at least `version`; returns the last state
    /// seen and whether they all did within `within` (a bound for a stuck drill, not a target).
    pub async fn converged(&self, cells: &[String], version: u64, within: Duration) -> (bool, SyncState) {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = SyncState::default();
        loop {
            if let Ok(state) = self.sync_state().await {
                let done = cells.iter().all(|c| state.acked.get(c).is_some_and(|v| *v >= version));
                last = state;
                if done {
                    return (true, last);
                }
            }
            if tokio::time::Instant::now() > deadline {
                return (false, last);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `demo-slot` as a name: `Demo Slot`.
fn title(id: &str) -> String {
    id.split(['-', '_'])
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
