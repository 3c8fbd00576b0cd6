//! Flag changes: validated, checked against every region's regulatory locks, written as one
//! versioned record with actor and reason.

use crate::error::ControlError;
use crate::store::ControlStore;
use contracts::changes::{Change, ChangeRecord};
use contracts::flags::{lock_violation, Flag, FlagDefinition, FlagKey, FlagLock, FlagPutRequest};
use contracts::ControlCode;
use std::collections::BTreeMap;

/// Longest change reason, in bytes: a sentence or a ticket reference, not a document.
pub const REASON_BYTES_MAX: usize = 1024;

/// Every region's locks, from the region files: region (cell id) to its locks.
#[derive(Debug, Clone, Default)]
pub struct Locks(pub BTreeMap<String, Vec<FlagLock>>);

impl Locks {
    pub fn from_regions(regions: &[contracts::region::RegionConfig]) -> Locks {
        Locks(regions.iter().map(|r| (r.cell_id.clone(), r.flag_locks.clone())).collect())
    }

    /// Refuses a definition that could serve, in some region, a value its lock forbids.
    pub fn check(&self, key: &FlagKey, def: &FlagDefinition) -> Result<(), ControlError> {
        for (region, locks) in &self.0 {
            for lock in locks.iter().filter(|l| &l.flag == key) {
                if let Some(how) = lock_violation(def, region, lock) {
                    return Err(ControlError::RegulatoryLock {
                        flag: key.to_string(),
                        rule: lock.rule.clone(),
                        region: region.clone(),
                        value: lock.value.to_string(),
                        how,
                    });
                }
            }
        }
        Ok(())
    }
}

pub fn check_reason(reason: &str) -> Result<(), ControlError> {
    if reason.trim().is_empty() || reason.len() > REASON_BYTES_MAX {
        return Err(ControlError::Invalid(format!(
            "`reason` must say why, in 1 to {REASON_BYTES_MAX} bytes: it is kept with the change forever"
        )));
    }
    Ok(())
}

fn parse_key(key: &str) -> Result<FlagKey, ControlError> {
    FlagKey::new(key).map_err(ControlError::Invalid)
}

fn not_found(key: &FlagKey) -> ControlError {
    ControlError::NotFound { code: ControlCode::FlagNotFound, what: "flag", id: key.to_string() }
}

/// Creates or replaces a flag. Blocking.
pub fn flag_put(
    store: &ControlStore,
    locks: &Locks,
    actor: &str,
    key: &str,
    request: FlagPutRequest,
) -> Result<Flag, ControlError> {
    let key = parse_key(key)?;
    check_reason(&request.reason)?;
    request.definition.validate().map_err(|e| ControlError::Invalid(format!("flag definition: {e}")))?;
    locks.check(&key, &request.definition)?;
    let record = store.commit(actor, &request.reason, |state, version, at| {
        let current = state.flags.get(&key).map_or(0, |f| f.version);
        if let Some(expected) = request.expected_version {
            if expected != current {
                return Err(ControlError::VersionConflict { flag: key.to_string(), current, expected });
            }
        }
        let flag = Flag {
            key: key.clone(),
            version,
            updated_at: at,
            updated_by: actor.to_owned(),
            definition: request.definition.clone(),
        };
        Ok::<_, ControlError>(vec![Change::FlagPut { flag }])
    })?;
    Ok(flag_of(record))
}

/// The kill switch: the flag serves its off variant in every region, at once. Blocking.
pub fn flag_kill(
    store: &ControlStore,
    locks: &Locks,
    actor: &str,
    key: &str,
    reason: &str,
) -> Result<Flag, ControlError> {
    let key = parse_key(key)?;
    check_reason(reason)?;
    let record = store.commit(actor, reason, |state, version, at| {
        let current = state.flags.get(&key).ok_or_else(|| not_found(&key))?;
        let mut definition = current.definition.clone();
        definition.enabled = false;
        locks.check(&key, &definition)?;
        let flag = Flag { key: key.clone(), version, updated_at: at, updated_by: actor.to_owned(), definition };
        Ok::<_, ControlError>(vec![Change::FlagPut { flag }])
    })?;
    Ok(flag_of(record))
}

/// Removes a flag; cells then answer `FLAG_NOT_FOUND` (or a lock's value). Blocking.
pub fn flag_delete(store: &ControlStore, actor: &str, key: &str, reason: &str) -> Result<ChangeRecord, ControlError> {
    let key = parse_key(key)?;
    check_reason(reason)?;
    store.commit(actor, reason, |state, _, _| {
        state.flags.get(&key).ok_or_else(|| not_found(&key))?;
        Ok::<_, ControlError>(vec![Change::FlagDelete { key: key.clone() }])
    })
}

pub fn flag_get(store: &ControlStore, key: &str) -> Result<Flag, ControlError> {
    let key = parse_key(key)?;
    store.read(|s| s.flags.get(&key).cloned()).ok_or_else(|| not_found(&key))
}

fn flag_of(record: ChangeRecord) -> Flag {
    match record.changes.into_iter().next() {
        Some(Change::FlagPut { flag }) => flag,
        _ => unreachable!("a flag put or kill writes exactly one FlagPut"),
    }
}
