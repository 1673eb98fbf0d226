//! The `matching` function: the secondary market. Its routes take orders and cancels and
//! show markets, orders and trades; its SQS event source (the FIFO `matching` queue, one
//! message group per asset) runs the matcher; a schedule closes each market's day.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use shared::Platform;
use shared::app::changes::{Change, ChangeRequest, ChangeRequests};
use shared::app::consumer::BatchHandler;
use shared::app::trading::matching::MatchingHandler;
use shared::app::trading::{Market, Order, OrderState, Placement, Trade, Trading, TradingError};
use shared::domain::access::{Action, Resource};
use shared::domain::market::{Level, Rules, Side};
use shared::domain::money::{self, format_cents};
use shared::http::auth::{ApiState, Authenticated, authorize};
use shared::http::idempotency::IdempotencyKey;
use shared::http::openapi::DecimalAmount;
use shared::http::page::{PageOf, Paging};
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, FieldError, Json, Path};
use shared::ports::queue::QueueName;
use utoipa::ToSchema;

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Matching;

/// What the routes use: the market, and change requests for its operators.
pub struct Services {
    pub trading: Trading,
    pub changes: ChangeRequests,
}

pub type TradingState = ApiState<Services>;

fn cents(amount: u64) -> String {
    format_cents(i128::from(amount))
}

fn trading_error(e: TradingError) -> ApiError {
    match e {
        TradingError::NoMarket => ApiError::not_found("no market: the asset is not an issued DABS"),
        TradingError::NotFound => ApiError::not_found("no such order"),
        TradingError::Halted => ApiError::conflict("the market is halted"),
        TradingError::Closed => {
            ApiError::conflict("the market is closed: orders are taken in its session on business days")
        }
        TradingError::Refused(refused) => {
            ApiError::validation(vec![FieldError::refused(refused.field, refused.reason)])
        }
        TradingError::Uncovered { field, reason } => ApiError::validation(vec![FieldError::refused(field, reason)]),
        TradingError::KeyReused => ApiError::unprocessable("the Idempotency-Key was used for another order"),
        TradingError::NotOpen(state) => {
            ApiError::conflict(format!("the order is {}: nothing to cancel", state_name(state)))
        }
        TradingError::Busy => ApiError::unavailable("the market is busy; retry"),
        other => ApiError::internal(&other),
    }
}

fn state_name(state: OrderState) -> &'static str {
    match state {
        OrderState::Open => "open",
        OrderState::Filled => "filled",
        OrderState::Cancelled => "cancelled",
        OrderState::Expired => "expired",
    }
}

/// `POST /v1/markets/{asset}/orders`: a limit order, good for the day.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub side: Side,
    /// SGD per unit: a multiple of the market's tick, within its price band.
    #[schema(value_type = DecimalAmount)]
    pub price: String,
    /// Whole units: a multiple of the market's lot size.
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub quantity: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    pub asset: String,
    pub side: Side,
    /// SGD per unit.
    pub price: String,
    pub quantity: u64,
    pub filled: u64,
    pub remaining: u64,
    pub state: OrderState,
    /// The trading day (Singapore) the order is good for.
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    /// SGD paid (a buy, fees included) or received (a sale, fees deducted) so far.
    pub settled: String,
    pub fees: String,
    /// SGD a buy order holds now in the deposit account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Resting orders of yours this order cancelled instead of trading with them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub self_trade_cancelled: Vec<String>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        Self {
            remaining: o.remaining(),
            id: o.id,
            asset: o.asset,
            side: o.side,
            price: cents(o.price),
            quantity: o.quantity,
            filled: o.filled,
            state: o.state,
            day: o.day,
            settled: cents(o.settled_cash),
            fees: cents(o.fees),
            held: o.held.map(|h| cents(h.amount)),
            reason: o.reason,
            self_trade_cancelled: o.self_trade_cancelled,
            placed_at: o.placed_at,
            updated_at: o.updated_at,
        }
    }
}

/// A trade as one party sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeView {
    pub id: String,
    pub asset: String,
    /// Your side.
    pub side: Side,
    pub order_id: String,
    /// SGD per unit (the resting order's price).
    pub price: String,
    pub quantity: u64,
    pub notional: String,
    /// Your fee: added to a buy, deducted from a sale.
    pub fee: String,
    /// What you paid (a buy) or received (a sale).
    pub net: String,
    /// Whether your order was the resting one.
    pub maker: bool,
    pub at: DateTime<Utc>,
}

impl TradeView {
    fn of(t: Trade, me: &str) -> Self {
        let side = if t.buyer == me { Side::Buy } else { Side::Sell };
        let (order_id, fee, net) = match side {
            Side::Buy => (t.buy_order.clone(), t.buyer_fee, t.notional() + t.buyer_fee),
            Side::Sell => (t.sell_order.clone(), t.seller_fee, t.notional() - t.seller_fee),
        };
        Self {
            notional: cents(t.notional()),
            maker: t.maker_side == side,
            id: t.id,
            asset: t.asset,
            side,
            order_id,
            price: cents(t.price),
            quantity: t.quantity,
            fee: cents(fee),
            net: cents(net),
            at: t.at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LevelView {
    /// SGD per unit.
    pub price: String,
    pub quantity: u64,
    pub orders: u64,
}

impl From<&Level> for LevelView {
    fn from(l: &Level) -> Self {
        Self { price: cents(l.price), quantity: l.quantity, orders: l.orders }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayView {
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    pub open: String,
    pub high: String,
    pub low: String,
    /// The last trade's price (the close, once the session closed).
    pub close: String,
    /// Units traded.
    pub volume: u64,
    pub turnover: String,
    pub trades: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MarketStatus {
    Open,
    Closed,
    Halted,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarketView {
    pub asset: String,
    pub name: String,
    pub status: MarketStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halt_reason: Option<String>,
    /// Sessions are Singapore time (UTC+8), Monday to Friday.
    pub rules: Rules,
    /// The last trade's price, or the offering's before the first trade.
    pub reference_price: String,
    /// Prices allowed now.
    pub band_low: String,
    pub band_high: String,
    pub best_bid: Option<String>,
    pub best_ask: Option<String>,
    /// Up to ten price levels a side, best first.
    pub bids: Vec<LevelView>,
    pub asks: Vec<LevelView>,
    pub last_price: Option<String>,
    /// The latest trading day's prices and volume.
    pub day: Option<DayView>,
}

impl MarketView {
    fn of(m: Market, now: DateTime<Utc>) -> Self {
        let status = match (m.halted, m.session_at(now)) {
            (true, _) => MarketStatus::Halted,
            (false, Some(_)) => MarketStatus::Open,
            (false, None) => MarketStatus::Closed,
        };
        let (low, high) = m.rules.band(m.reference_price);
        Self {
            asset: m.asset,
            name: m.name,
            status,
            halt_reason: m.halt_reason,
            reference_price: cents(m.reference_price),
            band_low: cents(low),
            band_high: cents(high),
            best_bid: m.bids.first().map(|l| cents(l.price)),
            best_ask: m.asks.first().map(|l| cents(l.price)),
            bids: m.bids.iter().map(LevelView::from).collect(),
            asks: m.asks.iter().map(LevelView::from).collect(),
            last_price: m.stats.as_ref().map(|s| cents(s.close)),
            day: m.stats.map(|s| DayView {
                day: s.day,
                open: cents(s.open),
                high: cents(s.high),
                low: cents(s.low),
                close: cents(s.close),
                volume: s.volume,
                turnover: cents(s.turnover),
                trades: s.trades,
            }),
            rules: m.rules,
        }
    }
}

/// An asset's market: status, rules, best bid and offer, depth, the day's prices (opted-in
/// accredited investors and operators).
#[utoipa::path(get, path = "/v1/markets/{asset}", tag = "trading", security(("bearer" = [])),
    params(("asset" = String, Path)),
    responses((status = 200, body = MarketView),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Below level 3", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn market(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    Path(asset): Path<String>,
) -> Result<Json<MarketView>, ApiError> {
    let now = shared::http::auth::as_of_now(&state.platform, &me).await?;
    authorize(&state.platform, &now, Action::ReadOffers, Resource::None, "market.read").await?;
    let (market, _) = state.services.trading.market(&asset).await.map_err(trading_error)?;
    Ok(Json(MarketView::of(market, state.platform.clock.now())))
}

/// Places a limit order for the day (level 3, opted in, second factor): a sell locks its
/// units, a buy holds price × quantity plus the most it can pay in fees. It is matched in
/// sequence with the asset's other orders after this answer: read it back for its fills.
/// The same `Idempotency-Key` and body answer the same order.
#[utoipa::path(post, path = "/v1/markets/{asset}/orders", tag = "trading", security(("bearer" = [])),
    params(("asset" = String, Path), ("Idempotency-Key" = String, Header)), request_body = OrderRequest,
    responses(
        (status = 201, description = "Accepted and locked; matching follows", body = OrderView),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Below level 3, or no second factor", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No market for the asset", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The market is closed or halted", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Off tick, lot or band; not covered by the holding or the balance; the key reused",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 503, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn place(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    Path(asset): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<OrderRequest>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    // The stored level: an investor who opted out is refused at once.
    let now = shared::http::auth::as_of_now(&state.platform, &me).await?;
    authorize(&state.platform, &now, Action::Subscribe, Resource::OwnedBy(&me.user_id), "order.place").await?;
    let price =
        money::parse_cents(&body.price).map_err(|e| ApiError::validation(vec![FieldError::amount("price", &e)]))?;
    let placement = Placement { side: body.side, price, quantity: body.quantity };
    let order = state.services.trading.place(&me.user_id, &asset, &key, &placement).await.map_err(trading_error)?;
    Ok((StatusCode::CREATED, Json(order.into())))
}

/// Asks for the caller's open order to be cancelled: it leaves the book in sequence with
/// the asset's other orders, and what is left returns. Read it back for its state.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "trading", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, description = "The cancel is on its way to the book", body = OrderView),
        (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Filled, cancelled or expired already", body = Problem, content_type = PROBLEM_JSON)))]
pub async fn cancel(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "order.cancel").await?;
    let order = state.services.trading.cancel(&me.user_id, &id).await.map_err(trading_error)?;
    Ok((StatusCode::ACCEPTED, Json(order.into())))
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "trading", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn order(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "order.read").await?;
    Ok(Json(state.services.trading.order_of(&me.user_id, &id).await.map_err(trading_error)?.into()))
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/v1/me/orders", tag = "trading", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<OrderView>), (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn my_orders(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<OrderView>>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "orders.mine").await?;
    let (orders, next) = state.services.trading.orders_of(&me.user_id, paging.limit, paging.cursor).await?;
    Ok(Json(PageOf::new(orders.into_iter().map(OrderView::from).collect(), next)))
}

/// The caller's trades, newest first.
#[utoipa::path(get, path = "/v1/me/trades", tag = "trading", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<TradeView>), (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn my_trades(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<TradeView>>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "trades.mine").await?;
    let (trades, next) = state.services.trading.trades_of(&me.user_id, paging.limit, paging.cursor).await?;
    Ok(Json(PageOf::new(trades.into_iter().map(|t| TradeView::of(t, &me.user_id)).collect(), next)))
}

/// `POST /v1/admin/markets/{asset}/halt`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaltRequest {
    /// Why, for the checker and the audit log.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// Proposes a change to an asset's market (deal operators); a second deal operator approves
/// it at `POST /v1/admin/change-requests/{id}/approve`. The market exists first.
async fn propose(
    state: &TradingState,
    me: &shared::app::sessions::Principal,
    asset: &str,
    change: Change,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    authorize(&state.platform, me, Action::ManageDeals, Resource::None, "market.change").await?;
    state.services.trading.market(asset).await.map_err(trading_error)?;
    let roles = me.known_roles();
    let request =
        state.services.changes.propose(&me.subject(&roles), change).await.map_err(shared::http::change_error)?;
    Ok((StatusCode::ACCEPTED, Json(request)))
}

/// Proposes halting an asset's market: once approved, no order is taken and orders still
/// on their way to the book are cancelled; resting orders stay until the close.
#[utoipa::path(post, path = "/v1/admin/markets/{asset}/halt", tag = "trading", security(("bearer" = [])),
    params(("asset" = String, Path)), request_body = HaltRequest,
    responses((status = 202, body = ChangeRequest), (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON), (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON), (status = 409, body = Problem, content_type = PROBLEM_JSON),
        (status = 422, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn halt(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    Path(asset): Path<String>,
    Json(body): Json<HaltRequest>,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    if body.reason.trim().is_empty() || body.reason.len() > 500 {
        return Err(ApiError::validation(vec![FieldError::new("reason", "1 to 500 characters")]));
    }
    propose(&state, &me, &asset.clone(), Change::HaltMarket { asset, reason: body.reason }).await
}

/// Proposes resuming a halted market.
#[utoipa::path(post, path = "/v1/admin/markets/{asset}/resume", tag = "trading", security(("bearer" = [])),
    params(("asset" = String, Path)),
    responses((status = 202, body = ChangeRequest), (status = 401, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON), (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, body = Problem, content_type = PROBLEM_JSON), (status = 422, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn resume(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    Path(asset): Path<String>,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    propose(&state, &me, &asset.clone(), Change::ResumeMarket { asset }).await
}

/// Proposes an asset's market rules: the session (Singapore time), tick, lot, band and fee.
#[utoipa::path(put, path = "/v1/admin/markets/{asset}/rules", tag = "trading", security(("bearer" = [])),
    params(("asset" = String, Path)), request_body = Rules,
    responses((status = 202, body = ChangeRequest), (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, body = Problem, content_type = PROBLEM_JSON), (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON), (status = 409, body = Problem, content_type = PROBLEM_JSON),
        (status = 422, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn set_rules(
    State(state): State<TradingState>,
    Authenticated(me): Authenticated,
    Path(asset): Path<String>,
    Json(rules): Json<Rules>,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    if let Err((field, why)) = shared::domain::market::check_rules(&rules) {
        return Err(ApiError::validation(vec![FieldError::refused(field, why)]));
    }
    propose(&state, &me, &asset.clone(), Change::SetMarketRules { asset, rules }).await
}

pub fn routes(platform: &Platform) -> Router {
    use axum::routing::{get, post, put};
    let changes = ChangeRequests::new(platform.store.clone(), platform.clock.clone(), platform.ids.clone());
    Router::new()
        .route("/v1/markets/{asset}", get(market))
        .route("/v1/markets/{asset}/orders", post(place))
        .route("/v1/orders/{id}", get(order))
        .route("/v1/orders/{id}/cancel", post(cancel))
        .route("/v1/me/orders", get(my_orders))
        .route("/v1/me/trades", get(my_trades))
        .route("/v1/admin/markets/{asset}/halt", post(halt))
        .route("/v1/admin/markets/{asset}/resume", post(resume))
        .route("/v1/admin/markets/{asset}/rules", put(set_rules))
        .with_state(ApiState::with(platform, Services { trading: platform.trading(), changes }))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(market, place, cancel, order, my_orders, my_trades, halt, resume, set_rules),
    components(schemas(HaltRequest, OrderRequest, OrderView, TradeView, MarketView, LevelView, DayView, MarketStatus, Rules, Side,
        OrderState)),
    tags((name = "trading", description = "The secondary market: limit orders, price-time matching, trades"))
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

/// The matcher, fed by the FIFO `matching` queue.
pub fn handler(platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(MatchingHandler { matcher: Arc::new(platform.matcher()), queue: platform.queue.clone() })
}

/// A schedule woke the function: `{"close_markets": true}` asks every market whose session
/// ended for its close (each close runs once per day, in sequence with the asset's orders).
pub async fn woken(platform: &Platform, event: serde_json::Value) -> Result<serde_json::Value, shared::lambda::Error> {
    let mut report = serde_json::Map::new();
    if event.get("close_markets").and_then(serde_json::Value::as_bool) == Some(true) {
        let closing = platform.trading().close_due().await?;
        report.insert("closing".into(), closing.into());
    }
    Ok(serde_json::Value::Object(report))
}
