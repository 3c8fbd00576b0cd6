//! `/players`: registration, owned by the compliance domain.

use super::{answer, mutating, ApiError, AppState, HeadersAndBody, TraceId};
use crate::domains::compliance::limits::ChainPendingAlerts;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use contracts::players::RegisterPlayerRequest;
use contracts::CellCode;
use std::sync::Arc;

pub async fn register(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    HeadersAndBody { headers: h, body }: HeadersAndBody,
) -> Result<Response, ApiError> {
    let d = s.domains()?;
    let (request, key) = mutating::<RegisterPlayerRequest>("players.register", &h, body)?;
    if let Some(weak) = crate::credentials::weakness(request.player_id.as_str(), request.password.expose()) {
        return Err(ApiError::bad_request(CellCode::WeakPassword, weak));
    }
    // A retry, or a request that cannot succeed, is answered before anyone outside is asked.
    let (compliance, checked, checked_key) = (d.compliance.clone(), request.clone(), key.clone());
    if let Some(earlier) = super::blocking(move || compliance.before_outside_checks(&checked, &checked_key)).await? {
        return Ok(answer(earlier));
    }
    let (profile, born) = (request.profile.as_ref(), request.date_of_birth);
    // The profile the region requires, then its self-exclusion register: an excluded player is
    // refused, and a register that does not answer refuses the registration (nothing is written).
    d.compliance.check_profile(profile)?;
    let point = contracts::region::ExclusionCheckPoint::Registration;
    d.compliance.screen(&request.player_id, profile, born, point, &s.event_context(&t, None)).await?;
    // Then the sanctions/PEP list: a hit registers the player with an open AML case.
    let sanctions = d.compliance.screen_sanctions(request.profile.as_ref()).await?;
    // Then the KYC vendor takes the identity check, whose result comes by its webhook.
    let kyc_check = d.compliance.request_kyc(&request.player_id, profile, born).await?;
    let (compliance, opens_case) = (d.compliance.clone(), sanctions.is_some());
    let ctx = s.event_context(&t, None);
    let outcome = super::blocking(move || {
        // Hashed before the transaction: tens of milliseconds that a retried commit need not redo.
        let credential = crate::credentials::hash(request.password.expose());
        compliance.player_register(request, Some(&credential), &key, &ctx, sanctions.as_ref(), kyc_check.as_deref())
    })
    .await?;
    if opens_case {
        // The case's alert into the audit chain (kept in the registration until the writer
        // takes it; a crash before this leaves it for the next start).
        let chained = d.ledger.execute_unkeyed(ChainPendingAlerts, s.event_context(&t, None)).await;
        if let Err(e) = chained {
            tracing::warn!(error = %e, "the AML alert waits for the next start to be chained");
        }
    }
    Ok(answer(outcome))
}
