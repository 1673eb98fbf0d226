//! The `myinfo` function: Singpass/Myinfo (FAPI 2.0) onboarding, the accredited-investor
//! assessment and opt-in, break-glass access to personal data, and the re-wrap of person
//! data keys (a schedule starts it; its pages arrive on the `myinfo` queue).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::Platform;
use shared::app::consumer::BatchHandler;
use shared::app::myinfo::client::FapiError;
use shared::app::myinfo::keys::MyinfoKeys;
use shared::app::myinfo::rewrap::{RewrapJob, RewrapMessage};
use shared::app::myinfo::{LogEntry, NOTICE_TEXT, NOTICE_VERSION, Onboarding, OnboardingError, OptIn, OptedIn};
use shared::domain::access::{Action, Resource};
use shared::domain::accreditation::{Criterion, Declaration, Outcome};
use shared::domain::money;
use shared::http::auth::{ApiState, Authenticated, authorize};
use shared::http::openapi::DecimalAmount;
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, FieldError, Json, Path};
use shared::ports::queue::{Message, QueueName};
use utoipa::ToSchema;

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Myinfo;

pub type MyinfoState = ApiState<Arc<Onboarding>>;

fn onboarding_error(e: OnboardingError) -> ApiError {
    match e {
        OnboardingError::UnknownFlow => {
            ApiError::not_found("no authorization is waiting for this state: it is unknown, used or expired")
        }
        OnboardingError::NotFound => {
            ApiError::not_found("no Myinfo assessment yet: start with POST /v1/myinfo/authorize")
        }
        OnboardingError::Conflict(detail) => ApiError::conflict(detail),
        OnboardingError::Forbidden(detail) => ApiError::forbidden(detail),
        OnboardingError::Singpass(error) => singpass_error(&error),
        OnboardingError::Change(e) => shared::http::change_error(e),
        other => ApiError::internal(&other),
    }
}

/// Singpass refused or answered something that failed a check: a 502 naming the check,
/// never the data.
fn singpass_error(error: &FapiError) -> ApiError {
    ApiError::bad_gateway(format!("Singpass: {}", error.code()))
}

/// `POST /v1/myinfo/authorize`: what the investor declares beside Myinfo (SGD decimal
/// strings; all optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclarationInput {
    /// Market value of the primary residence.
    #[schema(value_type = Option<DecimalAmount>)]
    pub residence_value: Option<String>,
    /// Outstanding loan on the primary residence.
    #[schema(value_type = Option<DecimalAmount>)]
    pub residence_loan: Option<String>,
    /// Deposits and investment products, CPF excluded (Myinfo supplies CPF balances).
    #[schema(value_type = Option<DecimalAmount>)]
    pub financial_assets: Option<String>,
    /// Liabilities secured by or incurred for those financial assets.
    #[schema(value_type = Option<DecimalAmount>)]
    pub financial_liabilities: Option<String>,
    /// Other assets (other property, vehicles, business interests).
    #[schema(value_type = Option<DecimalAmount>)]
    pub other_assets: Option<String>,
    #[schema(value_type = Option<DecimalAmount>)]
    pub other_liabilities: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The investor's own declaration of what Myinfo does not know.
    pub declaration: Option<DeclarationInput>,
}

impl DeclarationInput {
    fn parse(&self) -> Result<Declaration, ApiError> {
        let mut errors = Vec::new();
        let mut field = |name: &str, value: &Option<String>| -> u64 {
            match value.as_deref().map(money::parse_cents) {
                None => 0,
                Some(Ok(cents)) => cents,
                // Nothing to declare is a declaration too.
                Some(Err(money::MoneyError::NotPositive)) => 0,
                Some(Err(e)) => {
                    errors.push(FieldError::amount(format!("declaration.{name}"), &e));
                    0
                }
            }
        };
        let declaration = Declaration {
            residence_value: field("residence_value", &self.residence_value),
            residence_loan: field("residence_loan", &self.residence_loan),
            financial_assets: field("financial_assets", &self.financial_assets),
            financial_liabilities: field("financial_liabilities", &self.financial_liabilities),
            other_assets: field("other_assets", &self.other_assets),
            other_liabilities: field("other_liabilities", &self.other_liabilities),
        };
        if errors.is_empty() { Ok(declaration) } else { Err(ApiError::validation(errors)) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Authorization {
    /// Send the investor's browser here (Singpass's authorize page).
    pub authorize_url: String,
    /// The callback must come back before this.
    pub expires_at: DateTime<Utc>,
}

/// Starts Myinfo onboarding: a pushed authorization request (PKCE, `state`, `nonce`) to
/// Singpass. The investor must have a second factor (level 2).
#[utoipa::path(post, path = "/v1/myinfo/authorize", tag = "onboarding", security(("bearer" = [])),
    request_body(content = AuthorizeRequest, description = "Optional: `{}` is enough"),
    responses(
        (status = 201, body = Authorization),
        (status = 400, body = Problem, content_type = PROBLEM_JSON, description = "Malformed JSON, or an amount that is not a decimal of at most two places (`declaration.<field>`)"),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON, description = "Below level 2 (no second factor)"),
        (status = 413, body = Problem, content_type = PROBLEM_JSON),
        (status = 422, body = Problem, content_type = PROBLEM_JSON, description = "An amount too large (`declaration.<field>`)"),
        (status = 502, body = Problem, content_type = PROBLEM_JSON, description = "Singpass refused the request"),
    ))]
pub async fn start(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
    Json(body): Json<AuthorizeRequest>,
) -> Result<(StatusCode, Json<Authorization>), ApiError> {
    authorize(&state.platform, &me, Action::Onboard, Resource::None, "myinfo.authorize").await?;
    let declared = body.declaration.as_ref().map(DeclarationInput::parse).transpose()?;
    let (authorize_url, expires_at) = state.services.start(&me.user_id, declared).await.map_err(onboarding_error)?;
    Ok((StatusCode::CREATED, Json(Authorization { authorize_url, expires_at })))
}

/// `GET /v1/myinfo/callback`: where Singpass sends the investor back.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code (absent when Singpass answers an error).
    pub code: Option<String>,
    /// The `state` of the authorization request, used once.
    pub state: String,
    /// Singpass's error (the investor cancelled, or Singpass refused).
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Assessed {
    pub outcome: Outcome,
    /// The criteria met.
    pub met: Vec<Criterion>,
    /// The NRIC or FIN, masked.
    pub nric_masked: String,
    /// The notice to opt in to (`POST /v1/me/accreditation/opt-in`).
    pub notice_version: String,
}

/// The callback: the `state` is checked and spent, the code exchanged with DPoP and the
/// client assertion, the ID token and person data decrypted and verified, and the
/// assessment stored. No sign-in: the `state` names the investor.
#[utoipa::path(get, path = "/v1/myinfo/callback", tag = "onboarding", params(CallbackQuery),
    responses(
        (status = 200, body = Assessed),
        (status = 400, body = Problem, content_type = PROBLEM_JSON, description = "No `state`"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "The `state` is unknown, already used or expired"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON, description = "Singpass answered an error (`error`): the authorization is spent; or neither `code` nor `error` came (`code`)"),
        (status = 502, body = Problem, content_type = PROBLEM_JSON, description = "Singpass's answer failed a check (named in `detail`)"),
    ))]
pub async fn callback(
    State(state): State<MyinfoState>,
    query: shared::http::Query<CallbackQuery>,
) -> Result<Json<Assessed>, ApiError> {
    let shared::http::Query(query) = query;
    let flow_state = query.state.as_str();
    if let Some(error) = query.error.as_deref() {
        state.services.refused(flow_state, error).await.map_err(onboarding_error)?;
        return Err(ApiError::unprocessable("Singpass did not authorise: start again"));
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return Err(ApiError::validation(vec![FieldError::refused(
            "code",
            "the callback needs a `code` or an `error`",
        )]));
    };
    let completed = state.services.callback(code, flow_state).await.map_err(onboarding_error)?;
    Ok(Json(Assessed {
        outcome: completed.outcome,
        met: completed.met,
        nric_masked: completed.nric_masked,
        notice_version: NOTICE_VERSION.to_owned(),
    }))
}

/// The platform's keys towards Singpass (public parts only).
#[utoipa::path(get, path = "/.well-known/myinfo-jwks.json", tag = "onboarding",
    responses((status = 200, description = "A JWK set: one signing and one encryption key, two of each during a rotation's overlap", body = Object)))]
pub async fn jwks(State(state): State<MyinfoState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let now = state.platform.clock.now();
    let set = MyinfoKeys::jwks(state.platform.store.as_ref(), now).await.map_err(|e| ApiError::internal(&e))?;
    Ok(axum::Json(set))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Notice {
    pub version: String,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccreditationView {
    /// Absent before the first Myinfo assessment.
    pub outcome: Option<Outcome>,
    pub met: Vec<Criterion>,
    pub assessed_at: Option<DateTime<Utc>>,
    pub nric_masked: Option<String>,
    /// The notice to read before opting in.
    pub notice: Notice,
    pub opted_in: Option<OptIn>,
    pub opted_out_at: Option<DateTime<Utc>>,
    /// The manual review proposed when the assessment did not pass.
    pub review: Option<String>,
    /// The investor's verification level now.
    pub level: u8,
}

async fn view(state: &MyinfoState, user_id: &str) -> Result<AccreditationView, ApiError> {
    let record = state.services.accreditation(user_id).await?;
    let level =
        state.platform.accounts().user(user_id).await.map_err(|e| ApiError::internal(&e))?.map_or(0, |u| u.level);
    let notice = Notice { version: NOTICE_VERSION.to_owned(), text: NOTICE_TEXT.to_owned() };
    Ok(AccreditationView {
        outcome: record.as_ref().map(|r| r.outcome),
        met: record.as_ref().map(|r| r.met.clone()).unwrap_or_default(),
        assessed_at: record.as_ref().map(|r| r.assessed_at),
        nric_masked: record.as_ref().map(|r| r.nric_masked.clone()),
        notice,
        opted_in: record.as_ref().and_then(|r| r.opted_in.clone()),
        opted_out_at: record.as_ref().and_then(|r| r.opted_out_at),
        review: record.and_then(|r| r.review),
        level,
    })
}

/// The investor's accredited-investor status: the assessment, the notice to opt in to,
/// and the opt-in.
#[utoipa::path(get, path = "/v1/me/accreditation", tag = "onboarding", security(("bearer" = [])),
    responses(
        (status = 200, body = AccreditationView),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn status(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
) -> Result<Json<AccreditationView>, ApiError> {
    authorize(&state.platform, &me, Action::ManageOwnAccount, Resource::None, "accreditation.read").await?;
    Ok(Json(view(&state, &me.user_id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptInRequest {
    /// The version of the notice the investor read (`notice.version`).
    #[schema(min_length = 1, max_length = 64)]
    pub notice_version: String,
}

/// Opts in to accredited-investor status: level 3 at once if the assessment passed;
/// otherwise a manual review is proposed (maker-checker) with the assessment attached.
#[utoipa::path(post, path = "/v1/me/accreditation/opt-in", tag = "onboarding", security(("bearer" = [])),
    request_body = OptInRequest,
    responses(
        (status = 200, body = AccreditationView, description = "Opted in; `level` is 3 if the assessment passed, else `review` names the proposed review"),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "No Myinfo assessment yet"),
        (status = 409, body = Problem, content_type = PROBLEM_JSON, description = "The notice read is not the current version"),
        (status = 413, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn opt_in(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
    Json(body): Json<OptInRequest>,
) -> Result<Json<AccreditationView>, ApiError> {
    authorize(&state.platform, &me, Action::ManageOwnAccount, Resource::None, "accreditation.opt-in").await?;
    let opted = state.services.opt_in(&me.user_id, &body.notice_version).await.map_err(onboarding_error)?;
    tracing::info!(accredited = opted == OptedIn::Accredited, "accredited-investor opt-in");
    Ok(Json(view(&state, &me.user_id).await?))
}

/// Opts out: level 3 is withdrawn at once and new subscriptions are refused (open ones
/// stay). Always possible.
#[utoipa::path(post, path = "/v1/me/accreditation/opt-out", tag = "onboarding", security(("bearer" = [])),
    responses(
        (status = 200, body = AccreditationView),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn opt_out(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
) -> Result<Json<AccreditationView>, ApiError> {
    authorize(&state.platform, &me, Action::ManageOwnAccount, Resource::None, "accreditation.opt-out").await?;
    state.services.opt_out(&me.user_id).await.map_err(onboarding_error)?;
    Ok(Json(view(&state, &me.user_id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    /// Why the data is needed (kept in the audit log).
    #[schema(min_length = 10, max_length = 500)]
    pub reason: String,
}

impl BreakGlass {
    fn reason(&self) -> Result<&str, ApiError> {
        if !(10..=500).contains(&self.reason.chars().count()) {
            return Err(ApiError::validation(vec![FieldError::new("reason", "say why, in 10 to 500 characters")]));
        }
        let reason = self.reason.trim();
        if reason.chars().count() < 10 {
            return Err(ApiError::validation(vec![FieldError::refused("reason", "say why: blanks are not a reason")]));
        }
        Ok(reason)
    }
}

/// Break-glass: reads a person's decrypted Myinfo record. Data-protection role only,
/// with a reason; every attempt is audited.
#[utoipa::path(post, path = "/v1/admin/users/{id}/myinfo/reveal", tag = "onboarding", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = BreakGlass,
    responses(
        (status = 200, body = Object, description = "The person data, the assessment's inputs and figures"),
        (status = 400, body = Problem, content_type = PROBLEM_JSON, description = "Malformed JSON, or a reason of fewer than 10 or more than 500 characters (`reason`)"),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "No Myinfo record, or it was erased"),
        (status = 413, body = Problem, content_type = PROBLEM_JSON),
        (status = 422, body = Problem, content_type = PROBLEM_JSON, description = "A reason of blanks (`reason`)"),
    ))]
pub async fn reveal(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
    Path(user_id): Path<String>,
    Json(body): Json<BreakGlass>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let reason = body.reason()?;
    let roles = me.known_roles();
    let data = state.services.reveal(&me.subject(&roles), &user_id, reason).await.map_err(|e| match e {
        OnboardingError::Vault(shared::app::myinfo::vault::VaultError::Erased) => {
            ApiError::not_found("the person's data was erased")
        }
        e => onboarding_error(e),
    })?;
    Ok(axum::Json(data))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Erased {
    /// Whether a data key was there to erase.
    pub erased: bool,
}

/// PDPA erasure by crypto-shredding: the person's data key is deleted, so their Myinfo
/// data and the personal parts of their log can never be read again.
#[utoipa::path(post, path = "/v1/admin/users/{id}/myinfo/erase", tag = "onboarding", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = BreakGlass,
    responses(
        (status = 200, body = Erased),
        (status = 400, body = Problem, content_type = PROBLEM_JSON, description = "Malformed JSON, or a reason of fewer than 10 or more than 500 characters (`reason`)"),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 413, body = Problem, content_type = PROBLEM_JSON),
        (status = 422, body = Problem, content_type = PROBLEM_JSON, description = "A reason of blanks (`reason`)"),
    ))]
pub async fn erase(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
    Path(user_id): Path<String>,
    Json(body): Json<BreakGlass>,
) -> Result<Json<Erased>, ApiError> {
    let reason = body.reason()?;
    let roles = me.known_roles();
    let erased = state.services.erase(&me.subject(&roles), &user_id, reason).await.map_err(onboarding_error)?;
    Ok(Json(Erased { erased }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// Newest first; personal parts stay sealed.
    pub items: Vec<LogEntry>,
}

/// A person's Myinfo transaction log: every exchange with Singpass, its status and
/// outcome (the personal parts sealed).
#[utoipa::path(get, path = "/v1/admin/users/{id}/myinfo/log", tag = "onboarding", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, body = LogPage),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn log(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Json<LogPage>, ApiError> {
    authorize(&state.platform, &me, Action::ListUsers, Resource::None, "myinfo.log.read").await?;
    Ok(Json(LogPage { items: state.services.log_of(&user_id, 200).await? }))
}

/// Starts a re-wrap of every person data key under the key's current version (the
/// schedule does this after each rotation).
#[utoipa::path(post, path = "/v1/admin/myinfo/rewrap", tag = "onboarding", security(("bearer" = [])),
    responses(
        (status = 202, body = RewrapJob),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn start_rewrap(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
) -> Result<(StatusCode, Json<RewrapJob>), ApiError> {
    authorize(&state.platform, &me, Action::RotateKeys, Resource::None, "myinfo.rewrap.start").await?;
    let job = state.services.rewrap(state.platform.queue.clone()).start().await.map_err(|e| ApiError::internal(&e))?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// A re-wrap job's report: pages done, keys re-wrapped, and whether it finished.
#[utoipa::path(get, path = "/v1/admin/myinfo/rewrap/{id}", tag = "onboarding", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, body = RewrapJob),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn rewrap_job(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<RewrapJob>, ApiError> {
    authorize(&state.platform, &me, Action::RotateKeys, Resource::None, "myinfo.rewrap.read").await?;
    let job = state.services.rewrap(state.platform.queue.clone()).job(&id).await?;
    Ok(Json(job.ok_or_else(|| ApiError::not_found("no such re-wrap job"))?))
}

/// Sends an unfinished job's next page again (after its chain of messages stopped, e.g. a
/// page dead-lettered and mended): it goes on from its last cursor.
#[utoipa::path(post, path = "/v1/admin/myinfo/rewrap/{id}/resume", tag = "onboarding", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 202, body = RewrapJob, description = "The job as it stands; its next page is on the queue unless it finished"),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn resume_rewrap(
    State(state): State<MyinfoState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RewrapJob>), ApiError> {
    authorize(&state.platform, &me, Action::RotateKeys, Resource::None, "myinfo.rewrap.resume").await?;
    let job = state.services.rewrap(state.platform.queue.clone()).resume(&id).await.map_err(|e| match e {
        shared::app::myinfo::rewrap::RewrapError::NotFound => ApiError::not_found("no such re-wrap job"),
        e => ApiError::internal(&e),
    })?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// This function's own routes.
pub fn routes(platform: &Platform) -> Router {
    use axum::routing::{get, post};
    let services = Arc::new(platform.onboarding());
    Router::new()
        .route("/v1/myinfo/authorize", post(start))
        .route("/v1/myinfo/callback", get(callback))
        .route("/.well-known/myinfo-jwks.json", get(jwks))
        .route("/v1/me/accreditation", get(status))
        .route("/v1/me/accreditation/opt-in", post(opt_in))
        .route("/v1/me/accreditation/opt-out", post(opt_out))
        .route("/v1/admin/users/{id}/myinfo/reveal", post(reveal))
        .route("/v1/admin/users/{id}/myinfo/erase", post(erase))
        .route("/v1/admin/users/{id}/myinfo/log", get(log))
        .route("/v1/admin/myinfo/rewrap", post(start_rewrap))
        .route("/v1/admin/myinfo/rewrap/{id}", get(rewrap_job))
        .route("/v1/admin/myinfo/rewrap/{id}/resume", post(resume_rewrap))
        .with_state(ApiState::with(platform, services))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(start, callback, jwks, status, opt_in, opt_out, reveal, erase, log, start_rewrap, rewrap_job, resume_rewrap),
    components(schemas(AuthorizeRequest, DeclarationInput, Authorization, Assessed, AccreditationView, Notice,
        OptInRequest, OptIn, BreakGlass, Erased, LogPage, LogEntry, RewrapJob, Outcome, Criterion)),
    tags((name = "onboarding", description = "Singpass Myinfo onboarding, accredited-investor status and personal data"))
)]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <Doc as utoipa::OpenApi>::openapi()
}

/// The routes with everything every HTTP function shares, as Lambda serves them; the
/// document at `/openapi.json` is the whole API's.
pub fn app(platform: &Platform) -> Router {
    shared::http::service(routes(platform), platform, shared::http::openapi::published())
}

/// The re-wrap pages on the `myinfo` queue: an unreadable one is dead-lettered at once;
/// a page that fails is delivered again (it is safe to run twice).
struct Pages {
    rewrap: shared::app::myinfo::rewrap::Rewrap,
    queue: Arc<dyn shared::ports::Queue>,
}

#[async_trait::async_trait]
impl BatchHandler for Pages {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        shared::app::consumer::each_message(self.queue.as_ref(), QUEUE, batch, |message: RewrapMessage| async move {
            self.rewrap.run_page(&message.rewrap).await
        })
        .await
    }
}

pub fn handler(platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(Pages { rewrap: platform.onboarding().rewrap(platform.queue.clone()), queue: platform.queue.clone() })
}

/// A schedule woke the function: `{"rewrap": true}` starts a re-wrap of every person key
/// (after the key's yearly rotation); `{"rotate_client_keys": true}` rotates the keys the
/// platform presents to Singpass.
pub async fn woken(platform: &Platform, event: serde_json::Value) -> Result<serde_json::Value, shared::lambda::Error> {
    let mut report = serde_json::Map::new();
    if event.get("rewrap").and_then(serde_json::Value::as_bool) == Some(true) {
        let job = platform.onboarding().rewrap(platform.queue.clone()).start().await?;
        report.insert("rewrap_job".into(), job.id.into());
    }
    if event.get("rotate_client_keys").and_then(serde_json::Value::as_bool) == Some(true) {
        let kids = MyinfoKeys::rotate(
            platform.store.as_ref(),
            platform.keyring.as_ref(),
            platform.clock.as_ref(),
            platform.ids.as_ref(),
        )
        .await?;
        report.insert("client_keys".into(), kids.into());
    }
    Ok(serde_json::Value::Object(report))
}
