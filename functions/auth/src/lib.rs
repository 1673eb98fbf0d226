//! The `auth` function: sign-up, email verification, and (as they land) stepwise login,
//! token refresh and rotation, sessions and the JWKS; and the operator routes for users,
//! roles, change requests and the audit log.

mod admin;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Platform;
use shared::app::accounts::{AccountError, Accounts};
use shared::app::audit::Event;
use shared::app::mfa::{Enrollment, MfaError, SecondFactor};
use shared::app::sessions::{SessionError, Sessions, Tokens};
use shared::app::signing_keys::PublicKeys;
use shared::app::throttle::{self, Attempt, Throttle};
use shared::app::verifier::TokenVerifier;
use shared::domain::session::{RevokedBecause, SessionPolicy};
use shared::http::auth::{Authenticated, LazySessions, VerifierSource};
use shared::http::client::ClientAddress;
use shared::http::problem::Problem;
use shared::http::{ApiError, FieldError, Json};
use utoipa::{OpenApi, ToSchema};

/// What the handlers share. The token keys are unwrapped once, on first use.
#[derive(Clone)]
pub struct AuthState {
    platform: Platform,
    accounts: Arc<Accounts>,
    mfa: Arc<SecondFactor>,
    throttle: Arc<Throttle>,
    sessions: LazySessions,
    verifier: Arc<TokenVerifier>,
}

impl VerifierSource for AuthState {
    fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

impl AuthState {
    /// The session service: the signing key and refresh secret, unsealed on first use.
    async fn sessions(&self) -> Result<Arc<Sessions>, ApiError> {
        self.sessions.get().await
    }

    /// Reserves a sign-up or verification attempt for `email` from `client`, or answers
    /// 429; answers the address's scope.
    async fn email_code_attempt(&self, what: &str, email: &str, client: &str) -> Result<[String; 2], ApiError> {
        let scope = format!("{what}:{}", self.accounts.blind(email).await.map_err(api_error)?);
        let client = format!("{what}-client:{client}");
        let attempt =
            self.throttle.reserve(&[(&scope, &throttle::EMAIL_CODE), (&client, &throttle::CLIENT_SIGNUPS)]).await;
        match attempt? {
            Attempt::Refused { until } => Err(self.wait_until(until)),
            Attempt::Allowed { .. } => Ok([scope, client]),
        }
    }

    /// 429 until a throttled scope unlocks.
    fn wait_until(&self, until: DateTime<Utc>) -> ApiError {
        ApiError::too_many_requests(until, self.platform.clock.now())
    }
}

/// `POST /v1/auth/signup`. No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    #[schema(pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", max_length = 254)]
    pub email: String,
    /// 12 to 128 characters, not a known breached password, not containing the address.
    #[schema(min_length = 12, max_length = 128)]
    pub password: String,
}

/// `POST /v1/auth/email/verify`. No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmail {
    #[schema(pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", max_length = 254)]
    pub email: String,
    /// The six digits from the email.
    pub code: String,
    /// The account's password from now on (the rules of sign-up apply): only the holder of
    /// the code chooses it, whoever signed the address up first.
    #[schema(min_length = 12, max_length = 128)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignUpAnswer {
    pub status: &'static str,
}

/// `POST /v1/auth/login`. No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// A correct password of an account with a second factor: redeem `challenge` with a code
/// at `POST /v1/auth/login/mfa`.
#[derive(Serialize, ToSchema)]
pub struct MfaRequired {
    pub mfa_required: bool,
    pub challenge: String,
}

/// What a login answers: tokens, or a second-factor challenge.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Tokens(Tokens),
    MfaRequired(MfaRequired),
}

/// `POST /v1/auth/login/mfa`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfa {
    pub challenge: String,
    pub code: String,
}

/// `POST /v1/auth/mfa/totp/confirm`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotp {
    pub code: String,
}

/// `POST /v1/auth/refresh`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `POST /v1/auth/password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// The rules of sign-up apply.
    #[schema(min_length = 12, max_length = 128)]
    pub new_password: String,
}

/// One live session.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_rotated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Whether the calling access token belongs to this session.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionView>,
}

/// The caller, as the access token says.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: String,
    pub session_id: String,
    pub roles: Vec<String>,
    pub level: u8,
    /// For issuer users: the issuer they act for.
    pub issuer_id: Option<String>,
}

fn api_error(error: AccountError) -> ApiError {
    match error {
        AccountError::Invalid(errors) => ApiError::validation(errors),
        AccountError::InvalidCode => ApiError::validation(vec![FieldError::refused("code", "invalid or expired code")]),
        AccountError::WrongCredentials => ApiError::unauthorized("wrong email or password"),
        AccountError::EmailNotVerified => ApiError::forbidden("verify your email address first"),
        other => ApiError::internal(&other),
    }
}

fn mfa_error(state: &AuthState, error: MfaError) -> ApiError {
    match error {
        MfaError::Locked { until } => state.wait_until(until),
        MfaError::AlreadyEnrolled => ApiError::conflict("a second factor is already enrolled"),
        MfaError::NotEnrolled => ApiError::conflict("start an enrolment first"),
        MfaError::InvalidCode => ApiError::validation(vec![FieldError::refused("code", "invalid code")]),
        MfaError::InvalidChallenge => ApiError::unauthorized("invalid or expired challenge"),
        other => ApiError::internal(&other),
    }
}

pub(crate) fn session_error(error: SessionError) -> ApiError {
    match error {
        SessionError::Unauthorized | SessionError::ReuseDetected { .. } => {
            ApiError::unauthorized("invalid, expired or revoked refresh token")
        }
        other => ApiError::internal(&other),
    }
}

/// Registers an account and emails a verification code. The answer is the same whether or
/// not the address was already registered. Throttled per address and per client.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", request_body = SignUp,
    responses(
        (status = 202, description = "A code was emailed", body = SignUpAnswer),
        (status = 400, description = "Invalid email or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ups for the address or from the client: wait `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
    ))]
async fn sign_up(
    State(state): State<AuthState>,
    ClientAddress(address): ClientAddress,
    Json(body): Json<SignUp>,
) -> Result<(StatusCode, Json<SignUpAnswer>), ApiError> {
    state.email_code_attempt("signup", &body.email, &address).await?;
    state.accounts.sign_up(&body.email, &body.password).await.map_err(api_error)?;
    Ok((StatusCode::ACCEPTED, Json(SignUpAnswer { status: "verification_sent" })))
}

/// Verifies the address with the emailed code and sets the account's password. Throttled
/// per address and per client.
#[utoipa::path(post, path = "/v1/auth/email/verify", tag = "auth", request_body = VerifyEmail,
    responses(
        (status = 200, description = "The address is verified", body = SignUpAnswer),
        (status = 400, description = "Invalid or expired code, or a password the rules refuse", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many codes tried for the address or from the client: wait `Retry-After` seconds", body = Problem, content_type = "application/problem+json"),
    ))]
async fn verify_email(
    State(state): State<AuthState>,
    ClientAddress(address): ClientAddress,
    Json(body): Json<VerifyEmail>,
) -> Result<Json<SignUpAnswer>, ApiError> {
    let [scope, client] = state.email_code_attempt("verify", &body.email, &address).await?;
    state.accounts.verify_email(&body.email, &body.code, &body.password).await.map_err(api_error)?;
    state.throttle.reset(&scope).await?;
    state.throttle.refund(&client).await?;
    Ok(Json(SignUpAnswer { status: "verified" }))
}

pub(crate) const PROBLEM: &str = "application/problem+json";

/// Logs in with email and password; answers tokens, or a challenge when the account has
/// a second factor.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = Login,
    responses(
        (status = 200, body = LoginAnswer),
        (status = 401, description = "Wrong email or password", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Email not verified", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Too many failures: wait `Retry-After` seconds", body = Problem, content_type = PROBLEM),
    ))]
async fn login(
    State(state): State<AuthState>,
    ClientAddress(address): ClientAddress,
    Json(body): Json<Login>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let account = format!("account:{}", state.accounts.blind(&body.email).await.map_err(api_error)?);
    let address = format!("address:{address}");
    let attempt = state.throttle.reserve(&[(&account, &throttle::ACCOUNT), (&address, &throttle::ADDRESS)]).await;
    let locks = match attempt? {
        Attempt::Refused { until } => return Err(state.wait_until(until)),
        Attempt::Allowed { locks } => locks,
    };
    let user = match state.accounts.check_password(&body.email, &body.password).await {
        Ok(user) => user,
        Err(AccountError::WrongCredentials) => {
            let audited = throttle::audit_locks(&state.audit(), "login.lockout", &locks).await;
            audited?;
            return Err(api_error(AccountError::WrongCredentials));
        }
        Err(other) => return Err(api_error(other)),
    };
    state.throttle.reset(&account).await?;
    state.throttle.refund(&address).await?;
    if state.mfa.is_enrolled(&user.id).await.map_err(|e| mfa_error(&state, e))? {
        let challenge = state.mfa.challenge(&user.id).await.map_err(|e| mfa_error(&state, e))?;
        return Ok(Json(LoginAnswer::MfaRequired(MfaRequired { mfa_required: true, challenge })));
    }
    let sessions = state.sessions().await?;
    Ok(Json(LoginAnswer::Tokens(sessions.start(&user).await.map_err(session_error)?)))
}

/// Redeems a login challenge with a TOTP code; answers tokens.
#[utoipa::path(post, path = "/v1/auth/login/mfa", tag = "auth", request_body = LoginMfa,
    responses(
        (status = 200, body = Tokens),
        (status = 401, description = "Wrong code, or an invalid or expired challenge", body = Problem, content_type = PROBLEM),
        (status = 429, description = "Too many wrong codes for the account: wait `Retry-After` seconds", body = Problem, content_type = PROBLEM),
    ))]
async fn login_mfa(State(state): State<AuthState>, Json(body): Json<LoginMfa>) -> Result<Json<Tokens>, ApiError> {
    let user_id = state.mfa.redeem(&body.challenge, &body.code).await.map_err(|e| match e {
        MfaError::InvalidCode => ApiError::unauthorized("invalid code"),
        other => mfa_error(&state, other),
    })?;
    let user = state
        .accounts
        .user(&user_id)
        .await
        .map_err(api_error)?
        .ok_or_else(|| ApiError::unauthorized("invalid challenge"))?;
    let sessions = state.sessions().await?;
    Ok(Json(sessions.start_after_second_factor(&user).await.map_err(session_error)?))
}

/// How recent a login must be to enrol a second factor (a stolen access token alone cannot).
pub const STEP_UP: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// Starts a TOTP enrolment: answers the secret and an `otpauth://` URI for an authenticator
/// app. Needs a login in the last 15 minutes.
#[utoipa::path(post, path = "/v1/auth/mfa/totp", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 201, body = Enrollment),
        (status = 401, body = Problem, content_type = PROBLEM),
        (status = 403, description = "The session's login is older than 15 minutes: log in again", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Already enrolled", body = Problem, content_type = PROBLEM),
    ))]
async fn enroll_totp(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
) -> Result<(StatusCode, Json<Enrollment>), ApiError> {
    if !me.authenticated_within(STEP_UP, state.platform.clock.now()) {
        return Err(ApiError::forbidden("enrolling a second factor needs a login in the last 15 minutes"));
    }
    let user = state
        .accounts
        .user(&me.user_id)
        .await
        .map_err(api_error)?
        .ok_or_else(|| ApiError::unauthorized("no such user"))?;
    Ok((StatusCode::CREATED, Json(state.mfa.enroll(&user).await.map_err(|e| mfa_error(&state, e))?)))
}

/// Confirms the enrolment with a first code; the account reaches level 2.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/confirm", tag = "auth", request_body = ConfirmTotp, security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 400, body = Problem, content_type = PROBLEM),
        (status = 409, body = Problem, content_type = PROBLEM),
        (status = 429, description = "Too many wrong codes for the account: wait `Retry-After` seconds", body = Problem, content_type = PROBLEM),
    ))]
async fn confirm_totp(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    Json(body): Json<ConfirmTotp>,
) -> Result<StatusCode, ApiError> {
    state.mfa.confirm(&me.user_id, &body.code).await.map_err(|e| mfa_error(&state, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotates a refresh token: answers a new pair; the presented token is spent.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = Tokens),
        (status = 401, description = "Invalid, expired, revoked or reused token", body = Problem, content_type = PROBLEM),
    ))]
async fn refresh(State(state): State<AuthState>, Json(body): Json<RefreshRequest>) -> Result<Json<Tokens>, ApiError> {
    let sessions = state.sessions().await?;
    match sessions.refresh(&body.refresh_token).await {
        Ok(tokens) => Ok(Json(tokens)),
        Err(SessionError::ReuseDetected { family_id, user_id }) => {
            let event = Event {
                actor: "system".into(),
                action: "session.reuse-detected".into(),
                target: format!("user:{user_id}"),
                decision: format!("session {family_id} revoked"),
                reason: "a spent refresh token was presented".into(),
            };
            state.audit().append(event).await?;
            Err(session_error(SessionError::Unauthorized))
        }
        Err(other) => Err(session_error(other)),
    }
}

/// Ends the caller's session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = PROBLEM)))]
async fn logout(State(state): State<AuthState>, Authenticated(me): Authenticated) -> Result<StatusCode, ApiError> {
    let sessions = state.sessions().await?;
    sessions.revoke(&me.session_id, RevokedBecause::Logout).await.map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = PROBLEM)))]
async fn logout_all(State(state): State<AuthState>, Authenticated(me): Authenticated) -> Result<StatusCode, ApiError> {
    let sessions = state.sessions().await?;
    sessions.revoke_all(&me.user_id, RevokedBecause::LogoutAll).await.map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = Problem, content_type = PROBLEM)))]
async fn list_sessions(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state.sessions().await?;
    let items = sessions
        .list(&me.user_id)
        .await
        .map_err(session_error)?
        .into_iter()
        .map(|f| SessionView {
            current: f.id == me.session_id,
            id: f.id,
            created_at: f.created_at,
            last_rotated_at: f.rotated_at,
            expires_at: f.idle_expires_at,
        })
        .collect();
    Ok(Json(SessionList { items }))
}

/// Changes the password; every session ends, this one included.
#[utoipa::path(post, path = "/v1/auth/password", tag = "auth", request_body = ChangePassword, security(("bearer" = [])),
    responses(
        (status = 204),
        (status = 400, body = Problem, content_type = PROBLEM),
        (status = 401, body = Problem, content_type = PROBLEM),
    ))]
async fn change_password(
    State(state): State<AuthState>,
    Authenticated(me): Authenticated,
    Json(body): Json<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    state.accounts.change_password(&me.user_id, &body.current_password, &body.new_password).await.map_err(api_error)?;
    let sessions = state.sessions().await?;
    sessions.revoke_all(&me.user_id, RevokedBecause::PasswordChanged).await.map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the access token says the caller is.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem, content_type = PROBLEM)))]
async fn me(Authenticated(me): Authenticated) -> Json<Me> {
    Json(Me {
        user_id: me.user_id,
        session_id: me.session_id,
        roles: me.roles,
        level: me.level,
        issuer_id: me.issuer_id,
    })
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "A JWK set")))]
async fn jwks(State(state): State<AuthState>) -> Result<Json<serde_json::Value>, ApiError> {
    // Loading the sessions makes the first key on a new deployment; the set is then read
    // as stored, so a rotation by another instance shows at once.
    state.sessions().await?;
    let published = PublicKeys::load(state.platform.store.as_ref()).await?;
    Ok(Json(published.jwks(state.platform.clock.now(), SessionPolicy::default().key_overlap())))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        sign_up, verify_email, login, login_mfa, refresh, logout, logout_all, list_sessions, change_password, enroll_totp,
        confirm_totp, me, jwks, admin::list_users, admin::propose_role, admin::propose_level, admin::list_changes,
        admin::approve, admin::reject, admin::audit, admin::rotate_keys
    ),
    components(schemas(SignUp, VerifyEmail, SignUpAnswer, Login, LoginAnswer, MfaRequired, LoginMfa, Enrollment, ConfirmTotp, RefreshRequest, ChangePassword, Tokens, SessionView, SessionList, Me,
        admin::UserView, admin::RoleChange, admin::LevelChange, admin::Rejection, admin::KeyRotation, admin::Rotated)),
    tags(
        (name = "auth", description = "Accounts, login, tokens and sessions"),
        (name = "admin", description = "Operator routes: users, maker-checker change requests, audit log")
    )
)]
struct Doc;

/// This function's own routes.
pub fn routes(platform: &Platform) -> Router {
    let state = AuthState {
        platform: platform.clone(),
        accounts: Arc::new(platform.accounts()),
        mfa: Arc::new(platform.second_factor()),
        throttle: Arc::new(Throttle::new(platform.store.clone(), platform.clock.clone())),
        sessions: LazySessions::new(platform, SessionPolicy::default()),
        verifier: Arc::new(platform.token_verifier(SessionPolicy::default())),
    };
    Router::new()
        .route("/v1/auth/signup", post(sign_up))
        .route("/v1/auth/email/verify", post(verify_email))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/login/mfa", post(login_mfa))
        .route("/v1/auth/mfa/totp", post(enroll_totp))
        .route("/v1/auth/mfa/totp/confirm", post(confirm_totp))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/logout-all", post(logout_all))
        .route("/v1/auth/sessions", get(list_sessions))
        .route("/v1/auth/password", post(change_password))
        .route("/v1/me", get(me))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/admin/users", get(admin::list_users))
        .route("/v1/admin/users/{id}/roles", post(admin::propose_role))
        .route("/v1/admin/users/{id}/level", post(admin::propose_level))
        .route("/v1/admin/change-requests", get(admin::list_changes))
        .route("/v1/admin/change-requests/{id}/approve", post(admin::approve))
        .route("/v1/admin/change-requests/{id}/reject", post(admin::reject))
        .route("/v1/admin/audit", get(admin::audit))
        .route("/v1/admin/keys/rotate", post(admin::rotate_keys))
        .with_state(state)
}

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The routes with everything every HTTP function shares, as Lambda serves them; the
/// document at `/openapi.json` is the whole API's.
pub fn app(platform: &Platform) -> Router {
    shared::http::service(routes(platform), platform, shared::http::openapi::published())
}
