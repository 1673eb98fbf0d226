//! Operator routes: users, role and level changes through maker-checker, the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::app::accounts::{USERS_INDEX, User};
use shared::app::audit::{AuditEntry, AuditLog, Event};
use shared::app::changes::{Change, ChangeError, ChangeRequest, ChangeRequests};
use shared::app::sessions::Principal;
use shared::app::signing_keys::Rotation;
use shared::domain::access::{Action, Resource, Role};
use shared::domain::session::RevokedBecause;
use shared::http::Path;
use shared::http::auth::Authenticated;
use shared::http::page::{PageOf, Paging};
use shared::http::problem::Problem;
use shared::http::{ApiError, FieldError, Json, change_error};
use shared::ports::store::Query;
use utoipa::ToSchema;

use crate::{AuthState, PROBLEM, session_error};

/// A user as operators see it.
#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub level: u8,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/admin/users/{id}/roles`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// `grant` or `revoke`.
    #[schema(pattern = "^(grant|revoke)$")]
    pub action: String,
    #[schema(value_type = Role)]
    pub role: String,
}

/// `POST /v1/admin/users/{id}/level`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelChange {
    /// Only 3 (verified accredited investor, after manual review).
    #[schema(minimum = 3, maximum = 3)]
    pub level: u8,
}

/// `POST /v1/admin/change-requests/{id}/reject`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    pub note: Option<String>,
}

/// A proposal's refusal: an invalid one names the field the change came from (the role
/// or the level); every other error as every maker-checker route answers it.
fn proposal_error(error: ChangeError) -> ApiError {
    match error {
        ChangeError::Invalid(reason) => ApiError::validation(vec![FieldError::refused("level", reason)]),
        other => change_error(other),
    }
}

/// Checks an operator action with the policy; a refusal is audited and answered 403.
async fn authorize(state: &AuthState, me: &Principal, action: Action, name: &str) -> Result<(), ApiError> {
    shared::http::auth::authorize(&state.platform, me, action, Resource::None, name).await
}

/// Every user, oldest first.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<UserView>), (status = 403, body = Problem, content_type = PROBLEM)))]
pub async fn list_users(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<UserView>>, ApiError> {
    authorize(&state, &me, Action::ListUsers, "users.list").await?;
    let page =
        state.platform.store.query(&Query::secondary(USERS_INDEX).limit(paging.limit).after(paging.cursor)).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let user: User = item.decode()?;
        let email = state.accounts.email_of(&user).await.map_err(|e| ApiError::internal(&e))?;
        items.push(UserView {
            id: user.id,
            email: email.as_str().to_owned(),
            roles: user.roles,
            level: user.level,
            email_verified: user.email_verified,
            created_at: user.created_at,
        });
    }
    Ok(Json(PageOf::new(items, page.next)))
}

async fn propose(
    state: &AuthState,
    me: &Principal,
    change: Change,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    let roles = me.known_roles();
    let subject = me.subject(&roles);
    let request = state.changes().propose(&subject, change).await.map_err(proposal_error)?;
    Ok((StatusCode::ACCEPTED, Json(request)))
}

/// Proposes granting or revoking an operator role; another operator must approve.
#[utoipa::path(post, path = "/v1/admin/users/{id}/roles", tag = "admin", request_body = RoleChange, security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 202, body = ChangeRequest),
        (status = 400, body = Problem, content_type = PROBLEM),
        (status = 403, body = Problem, content_type = PROBLEM),
        (status = 409, description = "The same change is already pending", body = Problem, content_type = PROBLEM),
    ))]
pub async fn propose_role(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    Path(user_id): Path<String>,
    Json(body): Json<RoleChange>,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    let role =
        Role::parse(&body.role).ok_or_else(|| ApiError::validation(vec![FieldError::new("role", "not a role")]))?;
    let change = match body.action.as_str() {
        "grant" => Change::GrantRole { user_id, role },
        "revoke" => Change::RevokeRole { user_id, role },
        _ => return Err(ApiError::validation(vec![FieldError::new("action", "`grant` or `revoke`")])),
    };
    propose(&state, &me, change).await
}

/// Proposes verification level 3 after a manual review; another operator must approve.
#[utoipa::path(post, path = "/v1/admin/users/{id}/level", tag = "admin", request_body = LevelChange, security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 202, body = ChangeRequest),
        (status = 400, body = Problem, content_type = PROBLEM),
        (status = 403, body = Problem, content_type = PROBLEM),
        (status = 409, body = Problem, content_type = PROBLEM),
    ))]
pub async fn propose_level(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    Path(user_id): Path<String>,
    Json(body): Json<LevelChange>,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    // The schema's bound: only level 3 is set by review.
    if body.level != shared::domain::access::LEVEL_ACCREDITED {
        return Err(ApiError::validation(vec![FieldError::new("level", "only level 3 is set by manual review")]));
    }
    propose(&state, &me, Change::SetLevel { user_id, level: body.level, myinfo: None }).await
}

/// Change requests, newest first.
#[utoipa::path(get, path = "/v1/admin/change-requests", tag = "admin", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<ChangeRequest>), (status = 403, body = Problem, content_type = PROBLEM)))]
pub async fn list_changes(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<ChangeRequest>>, ApiError> {
    authorize(&state, &me, Action::ListChangeRequests, "change-request.list").await?;
    let (items, next) = state.changes().list(paging.limit, paging.cursor).await?;
    Ok(Json(PageOf::new(items, next)))
}

/// Approves someone else's change request and applies it.
#[utoipa::path(post, path = "/v1/admin/change-requests/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, body = ChangeRequest),
        (status = 403, description = "No checker role, or one's own request", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Already decided, or expired", body = Problem, content_type = PROBLEM),
    ))]
pub async fn approve(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ChangeRequest>, ApiError> {
    let roles = me.known_roles();
    let subject = me.subject(&roles);
    let request = state.changes().approve(&subject, &id).await.map_err(change_error)?;
    // A removed role must stop working now, not at the next refresh.
    if let Change::RevokeRole { user_id, .. } = &request.change {
        let sessions = state.sessions().await?;
        sessions.revoke_all(user_id, RevokedBecause::RolesChanged).await.map_err(session_error)?;
    }
    Ok(Json(request))
}

/// Rejects someone else's change request.
#[utoipa::path(post, path = "/v1/admin/change-requests/{id}/reject", tag = "admin", request_body = Rejection, security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, body = ChangeRequest),
        (status = 403, body = Problem, content_type = PROBLEM),
        (status = 409, body = Problem, content_type = PROBLEM),
    ))]
pub async fn reject(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
    Json(body): Json<Rejection>,
) -> Result<Json<ChangeRequest>, ApiError> {
    let roles = me.known_roles();
    let subject = me.subject(&roles);
    Ok(Json(state.changes().reject(&subject, &id, body.note).await.map_err(change_error)?))
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<AuditEntry>), (status = 403, body = Problem, content_type = PROBLEM)))]
pub async fn audit(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<AuditEntry>>, ApiError> {
    authorize(&state, &me, Action::ReadAudit, "audit.read").await?;
    let (items, next) = state.audit().page(paging.limit, paging.cursor).await?;
    Ok(Json(PageOf::new(items, next)))
}

/// `POST /v1/admin/keys/rotate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// An emergency: the keys in use stop verifying at once, so every access token they
    /// signed is refused (other functions within a minute). Otherwise they verify until
    /// the end of their overlap window.
    #[serde(default)]
    pub retire_now: bool,
    /// Replace the refresh-token secret too: every session must log in again.
    #[serde(default)]
    pub rotate_refresh_secret: bool,
    /// Why (1 to 500 characters, not only spaces), for the audit log.
    #[schema(pattern = r"\S", max_length = 500)]
    pub reason: String,
}

/// What a rotation did.
#[derive(Serialize, ToSchema)]
pub struct Rotated {
    /// The key that signs from now on.
    pub kid: String,
    /// The keys retired by this rotation.
    pub retired: Vec<String>,
    pub retired_now: bool,
    pub refresh_secret_rotated: bool,
}

/// Rotates the token keys at once (super-admin; audited): after a suspected leak of a
/// signing key or the refresh secret. Not a change request: it only takes access away.
#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "admin", request_body = KeyRotation,
    security(("bearer" = [])),
    responses(
        (status = 200, body = Rotated),
        (status = 400, body = Problem, content_type = PROBLEM),
        (status = 401, body = Problem, content_type = PROBLEM),
        (status = 403, body = Problem, content_type = PROBLEM),
    ))]
pub async fn rotate_keys(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    Json(body): Json<KeyRotation>,
) -> Result<Json<Rotated>, ApiError> {
    authorize(&state, &me, Action::RotateKeys, "keys.rotate").await?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::validation(vec![FieldError::new("reason", "1 to 500 characters")]));
    }
    let rotation = Rotation {
        max_age: chrono::TimeDelta::zero(),
        retire_now: body.retire_now,
        new_refresh_secret: body.rotate_refresh_secret,
    };
    let sessions = state.sessions().await?;
    let (kid, retired) = sessions.rotate_keys(rotation).await.map_err(session_error)?;
    // This process refuses the retired keys at once; the others read the set within a minute.
    state.verifier.forget();
    let event = Event {
        actor: me.user_id.clone(),
        action: "keys.rotate".into(),
        target: "token-keys".into(),
        decision: format!(
            "new key {kid}; retired {}{}{}",
            retired.join(", "),
            if body.retire_now { " at once" } else { " after the overlap window" },
            if body.rotate_refresh_secret { "; refresh secret replaced" } else { "" }
        ),
        reason: reason.to_owned(),
    };
    state.audit().append(event).await?;
    Ok(Json(Rotated { kid, retired, retired_now: body.retire_now, refresh_secret_rotated: body.rotate_refresh_secret }))
}

impl AuthState {
    pub(crate) fn audit(&self) -> AuditLog {
        AuditLog::new(self.platform.store.clone(), self.platform.clock.clone())
    }

    pub(crate) fn changes(&self) -> ChangeRequests {
        ChangeRequests::new(self.platform.store.clone(), self.platform.clock.clone(), self.platform.ids.clone())
    }
}
