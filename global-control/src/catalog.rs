//! Catalog changes: providers and games, each a versioned record synced to every cell.

use crate::error::ControlError;
use crate::flags::check_reason;
use crate::store::ControlStore;
use contracts::catalog::{Game, GameId, GamePutRequest, Provider, ProviderId, ProviderPutRequest};
use contracts::changes::{Change, ChangeRecord};
use contracts::ControlCode;

fn mismatch(what: &str, path: &str, body: &str) -> ControlError {
    ControlError::Invalid(format!("the path names {what} `{path}` but the body `{body}`"))
}

/// Creates or replaces a provider. Blocking.
pub fn provider_put(
    store: &ControlStore,
    actor: &str,
    id: &str,
    request: ProviderPutRequest,
) -> Result<Provider, ControlError> {
    check_reason(&request.reason)?;
    if request.provider.id.as_str() != id {
        return Err(mismatch("provider", id, request.provider.id.as_str()));
    }
    if request.provider.name.trim().is_empty() {
        return Err(ControlError::Invalid("provider `name` must not be empty".into()));
    }
    let provider = request.provider.clone();
    store.commit(actor, &request.reason, |_, _, _| Ok::<_, ControlError>(vec![Change::ProviderPut { provider }]))?;
    Ok(request.provider)
}

/// Creates or replaces a game; its provider must exist. Blocking.
pub fn game_put(store: &ControlStore, actor: &str, id: &str, request: GamePutRequest) -> Result<Game, ControlError> {
    check_reason(&request.reason)?;
    if request.game.id.as_str() != id {
        return Err(mismatch("game", id, request.game.id.as_str()));
    }
    request.game.validate().map_err(|(field, problem)| ControlError::Invalid(format!("field `{field}`: {problem}")))?;
    let game = request.game.clone();
    store.commit(actor, &request.reason, |state, _, _| {
        if !state.providers.contains_key(&game.provider_id) {
            return Err(ControlError::UnknownProvider {
                game: game.id.to_string(),
                provider: game.provider_id.to_string(),
            });
        }
        Ok::<_, ControlError>(vec![Change::GamePut { game }])
    })?;
    Ok(request.game)
}

pub fn game_delete(store: &ControlStore, actor: &str, id: &str, reason: &str) -> Result<ChangeRecord, ControlError> {
    check_reason(reason)?;
    let id = GameId::new(id).map_err(|e| ControlError::Invalid(e.to_string()))?;
    store.commit(actor, reason, |state, _, _| {
        if !state.games.contains_key(&id) {
            return Err(ControlError::NotFound { code: ControlCode::GameNotFound, what: "game", id: id.to_string() });
        }
        Ok::<_, ControlError>(vec![Change::GameDelete { id: id.clone() }])
    })
}

pub fn game_get(store: &ControlStore, id: &str) -> Result<Game, ControlError> {
    let id = GameId::new(id).map_err(|e| ControlError::Invalid(e.to_string()))?;
    store.read(|s| s.games.get(&id).cloned()).ok_or_else(|| ControlError::NotFound {
        code: ControlCode::GameNotFound,
        what: "game",
        id: id.to_string(),
    })
}

pub fn provider_get(store: &ControlStore, id: &str) -> Result<Provider, ControlError> {
    let id = ProviderId::new(id).map_err(|e| ControlError::Invalid(e.to_string()))?;
    store.read(|s| s.providers.get(&id).cloned()).ok_or_else(|| ControlError::NotFound {
        code: ControlCode::ProviderNotFound,
        what: "provider",
        id: id.to_string(),
    })
}
