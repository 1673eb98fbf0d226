//! Finance operators' view of reconciliation: runs, their unmatched rows, a CSV report,
//! and a run started for a chosen cut-off (audited).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::app::audit::{AuditLog, Event};
use shared::app::changes::{Change, ChangeRequest, ChangeRequests};
use shared::app::reconcile::{Count, ReconRun, Reconciler, RunVerdict, StoredRow};
use shared::domain::access::{Action, Resource};
use shared::domain::reconcile::Pair;
use shared::http::Path;
use shared::http::auth::{Authenticated, authorize};
use shared::http::page::{PageOf, Paging};
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, FieldError, Json};
use shared::ports::store::StoreError;
use utoipa::ToSchema;

use shared::http::auth::ApiState;

/// `POST /v1/admin/reconciliation/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The instant the books are compared at; not in the future.
    pub cut_off: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconRunView {
    pub id: String,
    pub cut_off: DateTime<Utc>,
    pub previous: Option<String>,
    pub verdict: RunVerdict,
    pub breaks: u64,
    pub timing_differences: u64,
    /// Breaks of earlier runs this one no longer found.
    pub resolved: u64,
    pub counts: Vec<Count>,
    pub chain_height: u64,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl From<ReconRun> for ReconRunView {
    fn from(r: ReconRun) -> Self {
        Self {
            id: r.id,
            cut_off: r.cut_off,
            previous: r.previous,
            verdict: r.verdict,
            breaks: r.breaks,
            timing_differences: r.timing,
            resolved: r.resolved,
            counts: r.counts,
            chain_height: r.chain_height,
            error: r.error,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

fn internal(e: StoreError) -> ApiError {
    ApiError::internal(&e)
}

async fn found(reconciler: &Reconciler, id: &str) -> Result<ReconRun, ApiError> {
    reconciler.get(id).await.map_err(internal)?.ok_or_else(|| ApiError::not_found("no such reconciliation run"))
}

/// Reconciliation runs, the latest cut-off first (finance operators).
#[utoipa::path(get, path = "/v1/admin/reconciliation/runs", tag = "reconciliation", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<ReconRunView>), (status = 403, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn list(
    State(state): State<ApiState<Reconciler>>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<ReconRunView>>, ApiError> {
    authorize(&state.platform, &me, Action::ManageReconciliation, Resource::None, "reconciliation.list").await?;
    let (runs, next) = state.services.list(paging.limit, paging.cursor).await.map_err(internal)?;
    Ok(Json(PageOf::new(runs.into_iter().map(ReconRunView::from).collect(), next)))
}

/// `202` for `POST /v1/admin/reconciliation/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunQueued {
    pub cut_off: DateTime<Utc>,
    /// `queued`: the run appears in `GET /v1/admin/reconciliation/runs` when it is done.
    pub status: String,
}

/// Asks for a reconciliation as of a cut-off (finance operators; audited). The run is
/// handed to the `reconcile` function, since it can take longer than a request may; it
/// appears in the runs when done. Running a cut-off again is a new run that names the
/// previous one.
#[utoipa::path(post, path = "/v1/admin/reconciliation/runs", tag = "reconciliation", security(("bearer" = [])),
    request_body = RunRequest,
    responses((status = 202, body = RunQueued), (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn start(
    State(state): State<ApiState<Reconciler>>,
    Authenticated(me): Authenticated,
    Json(body): Json<RunRequest>,
) -> Result<(StatusCode, Json<RunQueued>), ApiError> {
    authorize(&state.platform, &me, Action::ManageReconciliation, Resource::None, "reconciliation.run").await?;
    if body.cut_off > state.platform.clock.now() {
        return Err(ApiError::validation(vec![FieldError::refused("cut_off", "must not be in the future")]));
    }
    let reason = format!("cut-off {}", body.cut_off.to_rfc3339());
    let event = Event::applied(&me.user_id, "reconciliation.request", "reconciliation", reason);
    AuditLog::new(state.platform.store.clone(), state.platform.clock.clone()).append(event).await.map_err(internal)?;
    shared::app::reconcile::request(state.platform.queue.as_ref(), body.cut_off, &me.user_id).await?;
    Ok((StatusCode::ACCEPTED, Json(RunQueued { cut_off: body.cut_off, status: "queued".into() })))
}

/// One run (finance operators).
#[utoipa::path(get, path = "/v1/admin/reconciliation/runs/{id}", tag = "reconciliation", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ReconRunView), (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn get(
    State(state): State<ApiState<Reconciler>>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ReconRunView>, ApiError> {
    authorize(&state.platform, &me, Action::ManageReconciliation, Resource::None, "reconciliation.get").await?;
    Ok(Json(found(&state.services, &id).await?.into()))
}

/// A run's rows that did not match (breaks and timing differences), in account order.
#[utoipa::path(get, path = "/v1/admin/reconciliation/runs/{id}/breaks", tag = "reconciliation", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<StoredRow>), (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn breaks(
    State(state): State<ApiState<Reconciler>>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
    paging: Paging,
) -> Result<Json<PageOf<StoredRow>>, ApiError> {
    authorize(&state.platform, &me, Action::ManageReconciliation, Resource::None, "reconciliation.breaks").await?;
    let reconciler = state.services;
    found(&reconciler, &id).await?;
    let (rows, next) = reconciler.rows(&id, paging.limit, paging.cursor).await.map_err(internal)?;
    Ok(Json(PageOf::new(rows, next)))
}

/// Every row of a run that did not match, as CSV, streamed a page at a time: every field
/// quoted, and text cells that a spreadsheet would read as a formula neutralised.
#[utoipa::path(get, path = "/v1/admin/reconciliation/runs/{id}/report.csv", tag = "reconciliation",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "text/csv", body = String),
        (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn report(
    State(state): State<ApiState<Reconciler>>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state.platform, &me, Action::ManageReconciliation, Resource::None, "reconciliation.report").await?;
    let reconciler = state.services.clone();
    let run = found(&reconciler, &id).await?;
    // One page of rows per chunk; the header goes with the first. A store failure midway
    // ends the body early (the status is sent by then), and is logged.
    let pages = futures_util::stream::unfold(Some(None), move |cursor| {
        let (reconciler, id) = (reconciler.clone(), id.clone());
        async move {
            let cursor = cursor?;
            let first = cursor.is_none();
            match reconciler.rows(&id, REPORT_PAGE, cursor).await {
                Ok((rows, next)) => Some((report_chunk(first, &rows), next.map(Some))),
                Err(error) => {
                    tracing::error!(run = %id, %error, "the report stopped early");
                    Some((Err(std::io::Error::other("the report could not be read")), None))
                }
            }
        }
    });
    let filename = format!("attachment; filename=\"reconciliation-{}.csv\"", run.cut_off.format("%Y%m%dT%H%M%SZ"));
    let headers =
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, filename)];
    Ok((headers, axum::body::Body::from_stream(pages)))
}

/// Rows per chunk of the CSV report.
const REPORT_PAGE: usize = 500;
const REPORT_HEADER: [&str; 10] =
    ["account", "asset", "pair", "class", "ledger", "other", "difference", "verdict", "lifecycle", "rules"];

/// One chunk of the report: the header first, then `rows`.
fn report_chunk(header: bool, rows: &[StoredRow]) -> Result<Vec<u8>, std::io::Error> {
    let mut writer = csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Always).from_writer(Vec::new());
    if header {
        writer.write_record(REPORT_HEADER)?;
    }
    for r in rows {
        let rules: Vec<String> = r.rules.iter().map(name).collect();
        let cells = [
            r.account.clone(),
            r.asset.clone(),
            name(&r.pair),
            name(&r.class),
            r.ledger.clone().unwrap_or_default(),
            r.other.clone().unwrap_or_default(),
            r.difference.clone(),
            r.verdict.as_str().to_owned(),
            r.lifecycle.map(|l| l.as_str().to_owned()).unwrap_or_default(),
            rules.join(" "),
        ];
        writer.write_record(cells.iter().map(|cell| neutralised(cell).into_owned()))?;
    }
    writer.into_inner().map_err(|e| e.into_error())
}

/// A cell a spreadsheet would run as a formula (starting `=`, `+`, `-`, `@`, a tab or a
/// carriage return) gets a leading `'`, so it shows as text. A plain number, negative
/// ones included, stays a number.
fn neutralised(cell: &str) -> std::borrow::Cow<'_, str> {
    let number = cell.strip_prefix('-').unwrap_or(cell);
    let is_number = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.');
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_number {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `POST /v1/admin/reconciliation/breaks/accept`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    pub pair: Pair,
    pub account: String,
    pub asset: String,
    /// Why the difference is accepted (kept with the break and in the audit log): 1 to
    /// 1,000 characters, not only spaces.
    #[schema(pattern = r"\S", max_length = 1000)]
    pub note: String,
}

/// Proposes accepting an open break with a note (finance operators); a second finance
/// operator approves it at `POST /v1/admin/change-requests/{id}/approve`. Runs that then
/// find the same difference report it as accepted.
#[utoipa::path(post, path = "/v1/admin/reconciliation/breaks/accept", tag = "reconciliation",
    security(("bearer" = [])), request_body = AcceptRequest,
    responses((status = 202, body = ChangeRequest), (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such break", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Not open, or already proposed", body = Problem, content_type = PROBLEM_JSON)))]
pub async fn accept(
    State(state): State<ApiState<Reconciler>>,
    Authenticated(me): Authenticated,
    Json(body): Json<AcceptRequest>,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    let note = body.note.trim();
    if note.is_empty() || note.chars().count() > 1_000 {
        return Err(ApiError::validation(vec![FieldError::new("note", "must be 1 to 1,000 characters")]));
    }
    let p = &state.platform;
    let roles = me.known_roles();
    let change =
        Change::AcceptBreak { pair: body.pair, account: body.account, asset: body.asset, note: note.to_owned() };
    let changes = ChangeRequests::new(p.store.clone(), p.clock.clone(), p.ids.clone());
    let request = changes.propose(&me.subject(&roles), change).await.map_err(shared::http::change_error)?;
    Ok((StatusCode::ACCEPTED, Json(request)))
}

/// The snake_case name a value serialises to.
fn name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[cfg(test)]
mod report_tests {
    use super::neutralised;

    #[test]
    fn formulas_are_neutralised_and_numbers_are_not() {
        for formula in ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\t=x", "\r=x", "=HYPERLINK(\"http://x\")"] {
            assert_eq!(neutralised(formula), format!("'{formula}"), "{formula}");
        }
        for plain in ["-500", "1234", "12.50", "-0.01", "deposit:usr_1:SGD", "", "a=b"] {
            assert_eq!(neutralised(plain), plain, "{plain}");
        }
    }
}
