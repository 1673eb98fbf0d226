//! The investor's inbox: their notices newest first with the unread count, one notice
//! with its words, marking it read, its PDF document, and their notification preferences.
//! Another investor's notice is not found, never forbidden: its existence is not told.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::app::notices::{Noted, Notices, Preferences};
use shared::domain::access::{Action, Resource};
use shared::http::auth::{ApiState, Authenticated, authorize};
use shared::http::page::Paging;
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, FieldError, Json, Path};
use utoipa::ToSchema;

use crate::documents::Documents;
use crate::render::Renderer;
use crate::unsubscribe::Unsubscribe;

/// What the routes share.
pub struct Services {
    pub notices: Notices,
    pub renderer: Arc<Renderer>,
    pub documents: Arc<Documents>,
    pub unsubscribe: Arc<Unsubscribe>,
}

pub type NotifyState = ApiState<Services>;

/// A notice in the inbox list.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeSummary {
    pub id: String,
    /// The notice's kind, e.g. `deposit_credited`.
    pub kind: String,
    pub subject: String,
    pub at: DateTime<Utc>,
    pub read: bool,
    /// Whether a PDF document comes with it (`GET /v1/me/notices/{id}/pdf`).
    pub has_document: bool,
}

/// One page of the inbox, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    pub items: Vec<NoticeSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// The investor's unread notices, all pages.
    pub unread: u64,
}

/// A notice with its words, as the email said them.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeView {
    #[serde(flatten)]
    pub summary: NoticeSummary,
    pub read_at: Option<DateTime<Utc>>,
    /// The plain-text body.
    pub text: String,
    /// The facts the notice reports, as they were when it was written.
    #[schema(value_type = Object)]
    pub facts: serde_json::Value,
}

/// `PUT /v1/me/notification-preferences`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesUpdate {
    /// Emails when an offering opens (only accredited investors receive them).
    pub offering_news: bool,
}

fn summary(renderer: &Renderer, noted: &Noted) -> Result<NoticeSummary, ApiError> {
    let email = renderer.email(&noted.notice).map_err(|e| ApiError::internal(&e))?;
    Ok(NoticeSummary {
        id: noted.id.clone(),
        kind: noted.notice.kind().to_owned(),
        subject: email.subject,
        at: noted.at,
        read: noted.read_at.is_some(),
        has_document: noted.notice.document().is_some(),
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("no such notice")
}

/// The caller's notices, newest first, with the unread count.
#[utoipa::path(get, path = "/v1/me/notices", tag = "notices", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before")),
    responses(
        (status = 200, body = InboxPage),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn inbox(
    State(state): State<NotifyState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<InboxPage>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "notices.list").await?;
    let inbox = state.services.notices.inbox(&me.user_id, paging.limit, paging.cursor).await?;
    let items = inbox.notices.iter().map(|n| summary(&state.services.renderer, n)).collect::<Result<_, _>>()?;
    Ok(Json(InboxPage { items, next_cursor: inbox.next.map(|c| c.encode()), unread: inbox.unread }))
}

/// One of the caller's notices.
#[utoipa::path(get, path = "/v1/me/notices/{id}", tag = "notices", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, body = NoticeView),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn notice(
    State(state): State<NotifyState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<NoticeView>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "notices.read").await?;
    let noted = state.services.notices.of_investor(&me.user_id, &id).await?.ok_or_else(not_found)?;
    Ok(Json(view(&state, &noted)?))
}

fn view(state: &NotifyState, noted: &Noted) -> Result<NoticeView, ApiError> {
    let email = state.services.renderer.email(&noted.notice).map_err(|e| ApiError::internal(&e))?;
    let facts = serde_json::to_value(&noted.notice).map_err(|e| ApiError::internal(&e))?;
    Ok(NoticeView {
        summary: summary(&state.services.renderer, noted)?,
        read_at: noted.read_at,
        text: email.text,
        facts,
    })
}

/// Marks one of the caller's notices read (again: no change).
#[utoipa::path(post, path = "/v1/me/notices/{id}/read", tag = "notices", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, body = NoticeView),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn mark_read(
    State(state): State<NotifyState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<NoticeView>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "notices.mark-read").await?;
    let noted = state.services.notices.mark_read(&me.user_id, &id).await?.ok_or_else(not_found)?;
    Ok(Json(view(&state, &noted)?))
}

/// The notice's PDF document, rendered from its stored facts.
#[utoipa::path(get, path = "/v1/me/notices/{id}/pdf", tag = "notices", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, content_type = "application/pdf", body = Vec<u8>),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "No such notice of the caller's, or it has no document"),
    ))]
pub async fn pdf(
    State(state): State<NotifyState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "notices.pdf").await?;
    let noted = state.services.notices.of_investor(&me.user_id, &id).await?.ok_or_else(not_found)?;
    let Some(document) = noted.notice.document() else {
        return Err(ApiError::not_found("this notice has no document"));
    };
    let documents = state.services.documents.clone();
    let bytes = tokio::task::spawn_blocking(move || documents.render(&noted))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?;
    let disposition = format!("attachment; filename=\"{document}-{id}.pdf\"");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pdf".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        bytes,
    )
        .into_response())
}

/// The caller's notification preferences.
#[utoipa::path(get, path = "/v1/me/notification-preferences", tag = "notices", security(("bearer" = [])),
    responses((status = 200, body = Preferences), (status = 401, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn preferences(
    State(state): State<NotifyState>,
    Authenticated(me): Authenticated,
) -> Result<Json<Preferences>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "notices.preferences").await?;
    Ok(Json(state.services.notices.preferences(&me.user_id).await?))
}

/// Sets the caller's notification preferences.
#[utoipa::path(put, path = "/v1/me/notification-preferences", tag = "notices", security(("bearer" = [])),
    request_body = PreferencesUpdate,
    responses(
        (status = 200, body = Preferences),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 413, body = Problem, content_type = PROBLEM_JSON),
        (status = 415, body = Problem, content_type = PROBLEM_JSON),
        (status = 422, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn set_preferences(
    State(state): State<NotifyState>,
    Authenticated(me): Authenticated,
    Json(update): Json<PreferencesUpdate>,
) -> Result<Json<Preferences>, ApiError> {
    authorize(&state.platform, &me, Action::ManageOwnAccount, Resource::None, "notices.preferences.set").await?;
    let preferences = Preferences { offering_news: update.offering_news };
    state.services.notices.set_preferences(&me.user_id, preferences).await?;
    Ok(Json(preferences))
}

/// `?token=` of a news email's one-click unsubscribe link.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnsubscribeQuery {
    /// The token the email's `List-Unsubscribe` link carries.
    pub token: String,
}

/// One-click unsubscribe from offering news (RFC 8058): the mail client posts
/// `List-Unsubscribe=One-Click` to the email's link; no sign-in. Only `POST` changes
/// anything (a link prefetched or opened changes nothing).
#[utoipa::path(post, path = "/v1/notices/unsubscribe", tag = "notices", params(UnsubscribeQuery),
    responses(
        (status = 200, body = Preferences),
        (status = 400, body = Problem, content_type = PROBLEM_JSON, description = "No token (`token`)"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "The token names no one: not one this platform made"),
    ))]
pub async fn unsubscribe(
    State(state): State<NotifyState>,
    query: Result<axum::extract::Query<UnsubscribeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Preferences>, ApiError> {
    let missing = || ApiError::validation(vec![FieldError::new("token", "the link's token is required")]);
    let axum::extract::Query(query) = query.map_err(|_| missing())?;
    let user_id = state.services.unsubscribe.verify(&query.token).await.map_err(|e| ApiError::internal(&e))?;
    let user_id = user_id.ok_or_else(|| ApiError::not_found("no subscription to offering news has this token"))?;
    let preferences = Preferences { offering_news: false };
    state.services.notices.set_preferences(&user_id, preferences).await?;
    tracing::info!("offering news turned off by one-click unsubscribe");
    Ok(Json(preferences))
}
