//! The `notify` function: notices (written by the flows as an outbox, see
//! [`shared::app::notices`]) turned into emails and PDF documents, and the investor's inbox.
//!
//! - The table's stream (new notice items) and a five-minute schedule wake the relay, which
//!   sends waiting notices to the notify queue.
//! - The notify queue's consumer renders each notice, sends it once and records how that
//!   ended; fan-out notices become one notice per person, a page per message.
//! - HTTP: `/v1/me/notices…` and `/v1/me/notification-preferences`.

pub mod deliver;
pub mod documents;
pub mod render;
pub mod routes;
pub mod statements;
pub mod unsubscribe;

use std::sync::Arc;

use shared::Platform;
use shared::app::consumer::BatchHandler;
use shared::ports::queue::QueueName;

use crate::deliver::Notifier;
use crate::documents::Documents;
use crate::render::{RenderError, Renderer};

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Notify;
/// Notices relayed per wake (the rest on the next).
pub const RELAY_BATCH: usize = 500;

/// What the function builds once at start: the email templates and the PDF templates with
/// their fonts.
#[derive(Clone, Default)]
pub struct Templates {
    pub renderer: Arc<Renderer>,
    pub documents: Arc<Documents>,
}

impl Templates {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first template that does not parse: the function should not start with it.
    pub fn check(&self) -> Result<(), &RenderError> {
        self.renderer.broken().first().map_or(Ok(()), Err)
    }
}

/// The queue consumer, as Lambda and the local runner run it.
pub fn notifier(platform: &Platform, templates: &Templates) -> Notifier {
    Notifier {
        notices: platform.notices(),
        renderer: templates.renderer.clone(),
        store: platform.store.clone(),
        keyring: platform.keyring.clone(),
        mailer: platform.mailer.clone(),
        queue: platform.queue.clone(),
        mail_from: platform.config.mail_from.clone(),
        audiences: statements::Audiences::new(platform.ledger(), platform.deals()),
        unsubscribe: Arc::new(unsubscribe_links(platform)),
    }
}

fn unsubscribe_links(platform: &Platform) -> unsubscribe::Unsubscribe {
    let (store, keyring) = (platform.store.clone(), platform.keyring.clone());
    unsubscribe::Unsubscribe::new(store, keyring, platform.config.public_url.clone())
}

/// The batch handler, as Lambda and the local runner run it.
pub fn handler(platform: &Platform, templates: &Templates) -> Arc<dyn BatchHandler> {
    Arc::new(notifier(platform, templates))
}

/// This function's routes: the investor's inbox and preferences.
pub fn routes(platform: &Platform, templates: &Templates) -> axum::Router {
    use axum::routing::{get, post};
    let (renderer, documents) = (templates.renderer.clone(), templates.documents.clone());
    let unsubscribe = Arc::new(unsubscribe_links(platform));
    let services = routes::Services { notices: platform.notices(), renderer, documents, unsubscribe };
    axum::Router::new()
        .route("/v1/me/notices", get(routes::inbox))
        .route("/v1/me/notices/{id}", get(routes::notice))
        .route("/v1/me/notices/{id}/read", post(routes::mark_read))
        .route("/v1/me/notices/{id}/pdf", get(routes::pdf))
        .route("/v1/me/notification-preferences", get(routes::preferences).put(routes::set_preferences))
        .route(unsubscribe::PATH, post(routes::unsubscribe))
        .with_state(shared::http::auth::ApiState::with(platform, services))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::inbox, routes::notice, routes::mark_read, routes::pdf, routes::preferences, routes::set_preferences,
        routes::unsubscribe),
    components(schemas(routes::NoticeSummary, routes::InboxPage, routes::NoticeView, routes::PreferencesUpdate,
        shared::app::notices::Preferences)),
    tags((name = "notices", description = "The investor's notices (emails and PDF documents) and preferences"))
)]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <Doc as utoipa::OpenApi>::openapi()
}

/// The routes with everything every HTTP function shares, as Lambda serves them.
pub fn app(platform: &Platform, templates: &Templates) -> axum::Router {
    shared::http::service(routes(platform, templates), platform, shared::http::openapi::published())
}

/// What the stream or a schedule wakes: the relay of waiting notices; on the first of the
/// month (`{"statements": true}`), the month's statements notice first. The event's other
/// contents do not matter (the notices are read from the table); redelivery is harmless.
pub async fn woken(platform: &Platform, event: serde_json::Value) -> Result<serde_json::Value, shared::lambda::Error> {
    if event.get("statements").and_then(serde_json::Value::as_bool) == Some(true) {
        statements_due(platform).await?;
    }
    let relayed = platform.notices().relay(RELAY_BATCH).await?;
    tracing::info!(relayed, "notices relayed");
    Ok(serde_json::Value::Null)
}

/// Writes the notice that the month before's statements are due (once: asked again, it
/// is there already).
pub async fn statements_due(platform: &Platform) -> Result<(), shared::ports::store::StoreError> {
    use shared::ports::store::StoreError;
    match platform.store.transact(vec![statements::due(platform.clock.now())?]).await {
        Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One notice of each kind a person receives, with names in accents and markup: for the
/// tests' snapshots and the notices benchmark.
pub mod samples {
    use chrono::{DateTime, Utc};
    use shared::app::notices::{Audience, Delivery, Holding, Movement, Noted, Notice};
    use shared::domain::access::Role;
    use shared::domain::reconcile::RunVerdict;
    use shared::domain::settlement::LegKind;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    /// One notice of each kind (in [`Notice::kind`]'s order), as delivery meets it; names
    /// with accents and markup.
    pub fn every_kind() -> Vec<Noted> {
        let investor = || Audience::Investor("usr_01".into());
        let finance = || Audience::Operators(Role::Finance);
        let deal_name = || "Résidence Étoile <Office> & Retail".to_owned();
        let when = at("2026-12-08T02:00:00Z");
        let notices = vec![
            (
                investor(),
                Notice::DepositCredited {
                    amount: 1_234_567,
                    bank_reference: "DBS-20261201-0042".into(),
                    at: at("2026-12-01T01:30:00Z"),
                },
            ),
            (
                investor(),
                Notice::DepositReturned {
                    amount: 50_000,
                    bank_reference: "DBS-20261201-0043".into(),
                    at: at("2026-12-01T03:00:00Z"),
                },
            ),
            (
                investor(),
                Notice::WithdrawalPaid {
                    withdrawal_id: "wd_01".into(),
                    amount: 2_500_000,
                    at: at("2026-12-02T08:15:00Z"),
                },
            ),
            (
                investor(),
                Notice::WithdrawalFailed {
                    withdrawal_id: "wd_02".into(),
                    amount: 100_000,
                    reason: "account closed".into(),
                    at: at("2026-12-02T09:00:00Z"),
                },
            ),
            (
                investor(),
                Notice::SubscriptionReceived {
                    deal_name: deal_name(),
                    subscription_id: "sub_01".into(),
                    units: 1_000,
                    unit_price: 10_000,
                    held: 10_000_000,
                    closes_at: at("2026-12-07T10:00:00Z"),
                    at: at("2026-12-03T04:00:00Z"),
                },
            ),
            (
                investor(),
                Notice::SubscriptionCancelled {
                    deal_name: deal_name(),
                    subscription_id: "sub_02".into(),
                    released: 500_000,
                    at: at("2026-12-04T04:00:00Z"),
                },
            ),
            (
                investor(),
                Notice::AllocationResult {
                    deal_name: deal_name(),
                    subscription_id: "sub_01".into(),
                    requested: 1_000,
                    allocated: 333,
                    ratio: "0.333333333333333".into(),
                    unit_price: 10_000,
                    charged: 3_330_000,
                    refunded: 6_670_000,
                    at: when,
                },
            ),
            (
                investor(),
                Notice::DabsIssued {
                    deal_name: deal_name(),
                    asset: "DABS-MARINA".into(),
                    subscription_id: "sub_01".into(),
                    units: 333,
                    unit_price: 10_000,
                    custody_reference: "deal_01:distribution".into(),
                    chain_record: "issue:deal_01:sub_01".into(),
                    at: at("2026-12-09T02:00:00Z"),
                },
            ),
            (
                investor(),
                Notice::MonthlyStatement {
                    month: "2026-11".into(),
                    from: at("2026-10-31T16:00:00Z"),
                    to: at("2026-11-30T16:00:00Z"),
                    opening_balance: 0,
                    closing_balance: 8_904_567,
                    movements: vec![
                        Movement {
                            at: at("2026-11-02T01:30:00Z"),
                            description: "Deposit".into(),
                            amount: 12_234_567,
                            balance: 12_234_567,
                        },
                        Movement {
                            at: at("2026-11-20T02:00:00Z"),
                            description: "Subscription".into(),
                            amount: -3_330_000,
                            balance: 8_904_567,
                        },
                    ],
                    holdings: vec![Holding { asset: "DABS-MARINA".into(), units: 333, last_price: 10_000 }],
                },
            ),
            (
                Audience::OfferingNews,
                Notice::DealPublished {
                    deal_id: "deal_02".into(),
                    deal_name: deal_name(),
                    unit_price: 10_000,
                    supply: 100_000,
                    opens_at: at("2026-12-10T01:00:00Z"),
                    closes_at: at("2026-12-17T10:00:00Z"),
                },
            ),
            (
                Audience::Operators(Role::CoOperator),
                Notice::ChangeAwaitingChecker {
                    change_id: "chg_01".into(),
                    summary: "grant-role user:usr_02:role:finance".into(),
                    proposed_at: at("2026-12-01T06:00:00Z"),
                },
            ),
            (
                finance(),
                Notice::SettlementLegStuck {
                    deal_id: "deal_01".into(),
                    leg_id: "deal_01.proceeds".into(),
                    leg: LegKind::Proceeds,
                    error: "the Custody answered 503".into(),
                    since: at("2026-12-08T03:00:00Z"),
                },
            ),
            (
                finance(),
                Notice::ReconciliationFinished {
                    run_id: "recon_01".into(),
                    cut_off: at("2026-12-01T14:00:00Z"),
                    verdict: RunVerdict::Breaks,
                    breaks: 2,
                    timing: 5,
                    resolved: 1,
                },
            ),
            (
                investor(),
                Notice::TradeConfirmed {
                    trade_id: "trd_01".into(),
                    order_id: "ord_01".into(),
                    side: "buy".into(),
                    market: deal_name(),
                    asset: "DABS-MARINA".into(),
                    units: 40,
                    price: 10_250,
                    notional: 410_000,
                    fee: 820,
                    net: 410_820,
                    at: at("2026-12-10T03:15:00Z"),
                },
            ),
        ];
        notices
            .into_iter()
            .enumerate()
            .map(|(i, (audience, notice))| Noted {
                id: format!("ntc_{i:026}"),
                audience,
                notice,
                at: when,
                delivery: Delivery::Queued,
                read_at: None,
            })
            .collect()
    }
}
