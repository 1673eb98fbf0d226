//! Partner callbacks signed with a shared secret (`docs/partners/`).

use axum::http::HeaderMap;

use super::ApiError;
use crate::domain::webhook::{self, SignatureRefusal};
use crate::ports::partner_keys::{PartnerKeys, PartnerSecret};

/// Checks a partner's signed callback: `<partner>-timestamp` and `<partner>-signature`
/// over the body, within the five-minute window, with the partner's current secret or the
/// previous one (so the partner can switch while both are accepted). A signature neither
/// verifies makes the secret be read again once, in case it was rotated since.
pub async fn verify_signed(
    platform: &crate::Platform,
    keys: &dyn PartnerKeys,
    partner: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let header = |name: String| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = platform.clock.now().timestamp();
    let (signature, timestamp) = (header(format!("{partner}-signature")), header(format!("{partner}-timestamp")));
    let unavailable = |e: crate::ports::partner::PartnerError| ApiError::internal(&e);
    let check = |secret: &PartnerSecret| -> Result<(), SignatureRefusal> {
        for key in secret.webhook_secrets() {
            match webhook::verify(key, signature, timestamp, body, now) {
                Err(SignatureRefusal::Mismatch) => continue,
                other => return other,
            }
        }
        Err(SignatureRefusal::Mismatch)
    };
    let current = keys.get().await.map_err(unavailable)?;
    if current.webhook_secrets().next().is_none() {
        return Err(ApiError::unavailable(format!("the {partner} webhook secret is not configured")));
    }
    let outcome = match check(&current) {
        Err(SignatureRefusal::Mismatch) => {
            let fresh = keys.refresh().await.map_err(unavailable)?;
            if fresh == current { Err(SignatureRefusal::Mismatch) } else { check(&fresh) }
        }
        other => other,
    };
    outcome.map_err(|refusal| {
        tracing::warn!(%refusal, partner, "webhook refused");
        match refusal {
            SignatureRefusal::Stale => ApiError::unauthorized("the timestamp is outside the five-minute window"),
            _ => ApiError::unauthorized("the signature does not verify"),
        }
    })
}
