//! Deposit accounts: balances, statements, withdrawals, the bank's webhook, and the
//! finance operators' view of the ledger.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use shared::app::deposits::{DepositError, Received, Withdrawal, WithdrawalStatus};
use shared::app::ledger::{Entry, LedgerError, Side, Totals};
use shared::app::sessions::Principal;
use shared::domain::access::{Action, Resource};
use shared::domain::ledger::{Account, Kind, Phase, SGD};
use shared::domain::money::{self, format_cents};
use shared::http::auth::{Authenticated, authorize};
use shared::http::idempotency::IdempotencyKey;
use shared::http::openapi::DecimalAmount;
use shared::http::page::{PageOf, Paging};
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, FieldError, Json};
use shared::http::{Path, Query};
use shared::ports::bank::BankEvent;
use utoipa::ToSchema;

use crate::AccountsState;

/// How recently the session must have proved its second factor to withdraw.
pub const RECENT_SECOND_FACTOR: TimeDelta = TimeDelta::minutes(15);

/// An amount in an asset: a decimal string for SGD (`"100.00"`), whole units otherwise.
fn amount_text(asset: &str, value: i128) -> String {
    if asset == SGD { format_cents(value) } else { value.to_string() }
}

/// One account's balances.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub account_id: String,
    pub asset: String,
    pub kind: String,
    /// Posted credits minus posted debits.
    pub posted: String,
    /// Incoming, not yet cleared.
    pub pending_in: String,
    /// Held for withdrawals and subscriptions.
    pub pending_out: String,
    /// Posted less held: what can be withdrawn or subscribed.
    pub available: String,
}

impl From<&Account> for BalanceView {
    fn from(a: &Account) -> Self {
        Self {
            account_id: a.id.clone(),
            asset: a.asset.clone(),
            kind: a.kind.as_str().to_owned(),
            posted: amount_text(&a.asset, a.posted_balance()),
            pending_in: amount_text(&a.asset, a.credits_pending as i128),
            pending_out: amount_text(&a.asset, a.debits_pending as i128),
            available: amount_text(&a.asset, a.available()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyAccounts {
    /// Name this reference on a bank transfer to fund the deposit account.
    pub virtual_account: String,
    /// One per asset.
    pub accounts: Vec<BalanceView>,
}

/// A statement line.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    pub seq: u64,
    pub transfer_id: String,
    /// `single`, `pending`, `post` or `void`.
    pub phase: String,
    pub code: u16,
    pub reference: String,
    /// `debit` (money out) or `credit` (money in).
    pub side: String,
    pub amount: String,
    /// The posted balance after this entry (the running balance).
    pub balance: String,
    pub available: String,
    pub at: DateTime<Utc>,
}

impl From<Entry> for EntryView {
    fn from(e: Entry) -> Self {
        let asset = &e.transfer.asset;
        Self {
            seq: e.seq,
            phase: match e.transfer.phase {
                Phase::Single => "single",
                Phase::Pending => "pending",
                Phase::Post => "post",
                Phase::Void => "void",
            }
            .to_owned(),
            code: e.transfer.code,
            reference: e.transfer.reference.clone(),
            side: if e.side == Side::Debit { "debit" } else { "credit" }.to_owned(),
            amount: amount_text(asset, i128::from(e.amount)),
            balance: amount_text(asset, e.balance),
            available: amount_text(asset, e.available),
            at: e.at,
            transfer_id: e.transfer.id,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StatementQuery {
    asset: Option<String>,
}

/// `POST /v1/accounts/me/withdrawals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// SGD as a decimal string, like `"100.00"`.
    #[schema(value_type = DecimalAmount)]
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalView {
    pub id: String,
    pub amount: String,
    pub status: WithdrawalStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Withdrawal> for WithdrawalView {
    fn from(w: Withdrawal) -> Self {
        Self {
            id: w.id,
            amount: format_cents(i128::from(w.amount)),
            status: w.status,
            reason: w.reason,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// `applied`, or `duplicate` for an event already processed.
    pub status: &'static str,
}

fn deposit_error(e: DepositError) -> ApiError {
    match e {
        DepositError::UnknownVirtualAccount(_) => {
            ApiError::validation(vec![FieldError::refused("virtual_account", "no investor has this virtual account")])
        }
        DepositError::UnknownWithdrawal(_) => {
            ApiError::validation(vec![FieldError::refused("reference", "no withdrawal has this reference")])
        }
        DepositError::Amount(e) => ApiError::validation(vec![FieldError::amount("amount", &e)]),
        DepositError::KeyReused => ApiError::unprocessable("the Idempotency-Key was used before with another amount"),
        DepositError::Contradicts(refusal) => ApiError::conflict(format!("contradicts the ledger: {refusal}")),
        DepositError::Ledger(LedgerError::Busy) => ApiError::unavailable("the account is busy; retry"),
        DepositError::Ledger(e) => ApiError::internal(&e),
        DepositError::Store(e) => ApiError::internal(&e),
        DepositError::Partner(e) => ApiError::internal(&e),
    }
}

fn ledger_error(e: LedgerError) -> ApiError {
    deposit_error(e.into())
}

/// The caller's accounts: SGD deposit account (opened on first call) and DABS holdings.
#[utoipa::path(get, path = "/v1/accounts/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = MyAccounts), (status = 401, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn my_accounts(
    State(state): State<AccountsState>,
    Authenticated(me): Authenticated,
) -> Result<Json<MyAccounts>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "accounts.read").await?;
    let deposit = state.deposits.account_for(&me.user_id).await.map_err(deposit_error)?;
    let accounts = state.deposits.ledger().accounts_of(&me.user_id).await.map_err(ledger_error)?;
    Ok(Json(MyAccounts {
        virtual_account: deposit.virtual_account,
        accounts: accounts.iter().map(BalanceView::from).collect(),
    }))
}

/// The caller's statement in one asset (SGD unless `asset` says otherwise), newest first.
#[utoipa::path(get, path = "/v1/accounts/me/statement", tag = "accounts", security(("bearer" = [])),
    params(("asset" = Option<String>, Query), ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<EntryView>), (status = 401, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn my_statement(
    State(state): State<AccountsState>,
    Authenticated(me): Authenticated,
    Query(query): Query<StatementQuery>,
    paging: Paging,
) -> Result<Json<PageOf<EntryView>>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "accounts.statement").await?;
    let asset = query.asset.unwrap_or_else(|| SGD.to_owned());
    let kind = if asset == SGD { Kind::Deposit } else { Kind::Holding };
    statement(&state, &Account::id_of(kind, &me.user_id, &asset), paging).await
}

async fn statement(state: &AccountsState, account: &str, paging: Paging) -> Result<Json<PageOf<EntryView>>, ApiError> {
    let (entries, next) =
        state.deposits.ledger().statement(account, paging.limit, paging.cursor).await.map_err(ledger_error)?;
    Ok(Json(PageOf::new(entries.into_iter().map(EntryView::from).collect(), next)))
}

/// Withdraws to the investor's nominated bank account: holds the amount, instructs the
/// bank, posts when the bank confirms. Needs level 2 and a second factor proved at login
/// within the last 15 minutes. The same `Idempotency-Key` and amount answer the same withdrawal.
#[utoipa::path(post, path = "/v1/accounts/me/withdrawals", tag = "accounts", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header)),
    request_body = WithdrawalRequest,
    responses(
        (status = 202, description = "Held and instructed (or to be instructed)", body = WithdrawalView),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Level below 2 or no recent second factor", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "More than available, or the key was used with another amount", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn withdraw(
    State(state): State<AccountsState>,
    Authenticated(me): Authenticated,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<WithdrawalRequest>,
) -> Result<(StatusCode, Json<WithdrawalView>), ApiError> {
    authorize(&state.platform, &me, Action::Withdraw, Resource::OwnedBy(&me.user_id), "accounts.withdraw").await?;
    require_recent_second_factor(&state, &me)?;
    let amount =
        money::parse_cents(&body.amount).map_err(|e| ApiError::validation(vec![FieldError::amount("amount", &e)]))?;
    let w = state.deposits.withdraw(&me.user_id, &key, amount).await.map_err(deposit_error)?;
    if w.status == WithdrawalStatus::Rejected {
        return Err(ApiError::unprocessable("the amount is more than the available balance"));
    }
    Ok((StatusCode::ACCEPTED, Json(w.into())))
}

fn require_recent_second_factor(state: &AccountsState, me: &Principal) -> Result<(), ApiError> {
    if me.second_factor_within(RECENT_SECOND_FACTOR, state.platform.clock.now()) {
        return Ok(());
    }
    Err(ApiError::forbidden("withdrawing needs a second factor proved in the last 15 minutes: log in again with it"))
}

/// One of the caller's withdrawals.
#[utoipa::path(get, path = "/v1/accounts/me/withdrawals/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = WithdrawalView), (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn my_withdrawal(
    State(state): State<AccountsState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<WithdrawalView>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "withdrawals.read").await?;
    let found = state.deposits.withdrawal(&me.user_id, &id).await.map_err(deposit_error)?;
    found.map(|w| Json(w.into())).ok_or_else(|| ApiError::not_found("no such withdrawal"))
}

/// The bank's notifications, signed: `Bank-Timestamp` (Unix seconds) and
/// `Bank-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`. A timestamp more than
/// five minutes away is refused; an event id seen before is answered `duplicate`.
#[utoipa::path(post, path = "/v1/webhooks/bank", tag = "webhooks",
    params(("Bank-Timestamp" = String, Header), ("Bank-Signature" = String, Header)),
    request_body(content = Object, description = "A bank event (see docs/partners/bank.md)"),
    responses(
        (status = 200, body = WebhookAnswer),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Bad signature or stale timestamp", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Contradicts what the ledger recorded", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn bank_webhook(
    State(state): State<AccountsState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAnswer>, ApiError> {
    let keys = state.platform.config.bank_keys.as_ref();
    shared::http::webhook::verify_signed(&state.platform, keys, "bank", &headers, &body).await?;
    let event: BankEvent = shared::http::json::parse(&body)?;
    let received = state.deposits.receive(&event).await.map_err(deposit_error)?;
    Ok(Json(WebhookAnswer { status: if received == Received::Duplicate { "duplicate" } else { "applied" } }))
}

/// Any ledger account, for finance operators.
#[utoipa::path(get, path = "/v1/admin/accounts/{id}", tag = "ledger", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = BalanceView), (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn admin_account(
    State(state): State<AccountsState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<BalanceView>, ApiError> {
    authorize(&state.platform, &me, Action::ReadLedger, Resource::None, "ledger.account").await?;
    let account = state.deposits.ledger().account(&id).await.map_err(ledger_error)?;
    account.map(|a| Json(BalanceView::from(&a))).ok_or_else(|| ApiError::not_found("no such account"))
}

/// Any ledger account's statement, for finance operators.
#[utoipa::path(get, path = "/v1/admin/accounts/{id}/statement", tag = "ledger", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<EntryView>), (status = 403, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn admin_statement(
    State(state): State<AccountsState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
    paging: Paging,
) -> Result<Json<PageOf<EntryView>>, ApiError> {
    authorize(&state.platform, &me, Action::ReadLedger, Resource::None, "ledger.statement").await?;
    statement(&state, &id, paging).await
}

/// Per asset, the sums of debits and credits over every account (posted and pending):
/// debits equal credits when the books balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerTotalsView {
    pub asset: String,
    pub accounts: u64,
    pub debits_posted: String,
    pub credits_posted: String,
    pub debits_pending: String,
    pub credits_pending: String,
    pub balanced: bool,
}

impl From<Totals> for LedgerTotalsView {
    fn from(t: Totals) -> Self {
        let text = |v: u128| amount_text(&t.asset, v as i128);
        Self {
            accounts: t.accounts,
            debits_posted: text(t.debits_posted),
            credits_posted: text(t.credits_posted),
            debits_pending: text(t.debits_pending),
            credits_pending: text(t.credits_pending),
            balanced: t.debits_posted == t.credits_posted && t.debits_pending == t.credits_pending,
            asset: t.asset,
        }
    }
}

#[utoipa::path(get, path = "/v1/admin/ledger/totals", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, body = [LedgerTotalsView]), (status = 403, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn ledger_totals(
    State(state): State<AccountsState>,
    Authenticated(me): Authenticated,
) -> Result<Json<Vec<LedgerTotalsView>>, ApiError> {
    authorize(&state.platform, &me, Action::ReadLedger, Resource::None, "ledger.totals").await?;
    let totals = state.deposits.ledger().totals().await.map_err(ledger_error)?;
    Ok(Json(totals.into_iter().map(LedgerTotalsView::from).collect()))
}
