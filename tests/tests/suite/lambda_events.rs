//! The event fixtures in `infra/events/` (used with `cargo lambda invoke --data-file`)
//! go through the same code paths the Lambda runtime drives.

use std::sync::Arc;

use shared::ports::queue::QueueName;

use shared::Platform;
use shared::adapters::clock::SystemClock;
use tower::ServiceExt;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../infra/events/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn platform() -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Platform::ephemeral(dir.path(), Arc::new(SystemClock)).unwrap(), dir)
}

#[tokio::test]
async fn an_api_gateway_request_reaches_the_router_and_answers_health() {
    let (platform, _dir) = platform();
    let event: lambda_http::request::LambdaRequest = serde_json::from_str(&fixture("health-http.json")).unwrap();
    let request: lambda_http::Request = event.into();
    let response = auth::app(&platform).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn an_sqs_event_dead_letters_what_fails_for_good_and_reports_no_retry_for_it() {
    let (platform, _dir) = platform();
    draft_deal(&platform, "deal_fixture").await;
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&fixture("allocation-sqs.json")).unwrap();
    let first = event.records[0].body.clone().unwrap();
    let response = shared::app::consumer::handle_sqs_event(allocation::handler(&platform).as_ref(), event).await;
    // A message of unknown kind fails for good: dead-lettered at once, not delivered again;
    // starting the allocation of a deal not closed does nothing.
    assert!(response.batch_item_failures.is_empty());
    let dead = platform.queue.dead_letters(QueueName::Allocation, 10).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.message.body.clone()).collect::<Vec<_>>(), [first]);
}

/// A draft deal, written to the store.
async fn draft_deal(platform: &shared::Platform, id: &str) {
    let deal: shared::app::deals::Deal = serde_json::from_value(draft_deal_value(id)).unwrap();
    let item = shared::app::deals::deal_item(&deal).unwrap();
    platform.store.put(item, shared::ports::store::Condition::NotExists).await.unwrap();
}

fn draft_deal_value(id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "issuer_id": "iss_fixture", "state": "draft", "asset": format!("DABS-{id}"),
        "escrow_account": format!("escrow:{id}:SGD"), "created_by": "ops",
        "created_at": "2026-11-25T06:00:00Z", "updated_at": "2026-11-25T06:00:00Z",
        "terms": {"building": {"name": "Harbour Point", "address": "2 Harbour Rd", "kind": "office", "valuation": 1},
            "supply": 100, "unit_price": 100, "min_units": 1, "max_units": 10, "documents": [],
            "opens_at": "2026-11-26T06:00:00Z", "closes_at": "2026-11-27T06:00:00Z"}
    })
}

#[tokio::test]
async fn the_schedule_event_runs_a_reconciliation_and_a_failed_source_is_an_error_not_a_success() {
    use shared::adapters::partners::{Fault, FaultKind};
    let (platform, _dir) = platform();
    // The schedule's own time is the cut-off, so a retry reconciles the same one.
    let trigger: reconcile::Trigger = serde_json::from_str(&fixture("reconcile-schedule.json")).unwrap();
    assert_eq!(trigger.cut_off, Some("2026-11-25T14:00:00Z".parse().unwrap()));
    let run = reconcile::run(&platform, trigger.clone()).await.unwrap();
    assert_eq!(run.verdict, shared::app::reconcile::RunVerdict::Reconciled, "{run:?}");
    assert_eq!(Some(run.cut_off), trigger.cut_off);
    let sims = platform.simulators.as_ref().unwrap();
    platform.deposit_accounts().account_for("u1").await.unwrap();
    sims.custody.inject(Fault { kind: FaultKind::Fail, times: 1, delay_ms: 0 });
    let failed = reconcile::run(&platform, trigger).await.unwrap_err();
    assert!(matches!(failed, reconcile::RunError::Incomplete(_)), "{failed}");
}

/// An operator's requested run comes on the reconcile queue: the run is made once however
/// often the message is delivered; a malformed request goes to the dead-letter queue at
/// once, alone (it would never run).
#[tokio::test]
async fn a_requested_run_on_the_queue_runs_once_and_a_malformed_request_is_dead_lettered_alone() {
    let (platform, _dir) = platform();
    let handler = reconcile::handler(&platform);
    let payload: serde_json::Value = serde_json::from_str(&fixture("reconcile-sqs.json")).unwrap();
    let malformed = payload["Records"][1]["body"].as_str().unwrap().to_owned();
    let scheduled = |payload| reconcile::scheduled(&platform, payload);
    for _ in 0..2 {
        let answer = shared::lambda::dispatch(handler.as_ref(), &scheduled, payload.clone()).await.unwrap();
        assert_eq!(answer["batchItemFailures"], serde_json::json!([]), "none is delivered again: {answer}");
    }
    let dead = platform.queue.dead_letters(QueueName::Reconcile, 10).await.unwrap();
    let dead: Vec<&str> = dead.iter().map(|r| r.message.body.as_str()).collect();
    assert_eq!(dead, [malformed.as_str(), malformed.as_str()], "the malformed request, once per delivery");
    let (runs, _) = platform.reconciler().list(10, None).await.unwrap();
    let cut_offs: Vec<String> = runs.iter().map(|r| r.cut_off.to_rfc3339()).collect();
    assert_eq!(cut_offs, ["2026-11-25T14:00:00+00:00"], "one run, delivered twice");
    let run = shared::lambda::dispatch(handler.as_ref(), &scheduled, serde_json::json!({})).await.unwrap();
    assert!(run.as_str().is_some_and(|id| id.starts_with("recon")), "the schedule's event runs now: {run}");

    // A requested run a source fails is incomplete: its message fails, to be delivered again.
    let mut retried = payload.clone();
    retried["Records"] = serde_json::json!([payload["Records"][0].clone()]);
    retried["Records"][0]["messageId"] = "7e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b".into();
    retried["Records"][0]["body"] = r#"{"cut_off":"2026-11-24T14:00:00Z","requested_by":"usr_finance"}"#.into();
    platform.deposit_accounts().account_for("u1").await.unwrap();
    let sims = platform.simulators.as_ref().unwrap();
    sims.custody.inject(shared::adapters::partners::Fault {
        kind: shared::adapters::partners::FaultKind::Fail,
        times: 1,
        delay_ms: 0,
    });
    let failed = shared::lambda::dispatch(handler.as_ref(), &scheduled, retried.clone()).await.unwrap();
    assert_eq!(failed["batchItemFailures"][0]["itemIdentifier"], retried["Records"][0]["messageId"], "{failed}");
    let done = shared::lambda::dispatch(handler.as_ref(), &scheduled, retried).await.unwrap();
    assert_eq!(done["batchItemFailures"], serde_json::json!([]), "the redelivery completes: {done}");
    let (runs, _) = platform.reconciler().list(10, None).await.unwrap();
    let of_cut_off: Vec<_> = runs.iter().filter(|r| r.cut_off.to_rfc3339() == "2026-11-24T14:00:00+00:00").collect();
    let verdicts: Vec<_> = of_cut_off.iter().map(|r| r.verdict).collect();
    use shared::app::reconcile::RunVerdict::{Incomplete, Reconciled};
    assert_eq!(verdicts, [Reconciled, Incomplete], "the retry names the incomplete run: {of_cut_off:?}");
    assert_eq!(of_cut_off[0].previous.as_deref(), Some(of_cut_off[1].id.as_str()));
}

/// The settlement function: an SQS batch goes to its handler; a stream batch wakes the
/// chain mirror's drain and the schedule the whole sweep.
#[tokio::test]
async fn settlement_sends_sqs_to_its_handler_a_stream_batch_to_the_drain_and_the_schedule_to_the_sweep() {
    use shared::domain::ledger::{Account, Kind, Transfer, codes};

    let (platform, _dir) = platform();
    let ledger = platform.ledger();
    ledger.open(Account::of(Kind::Omnibus, "bank", "SGD")).await.unwrap();
    ledger.open(Account::of(Kind::Deposit, "u1", "SGD")).await.unwrap();
    let deposit = Transfer::single("d1", "omnibus:bank:SGD", "deposit:u1:SGD", 4_200, "SGD", codes::DEPOSIT);
    ledger.submit(&deposit).await.unwrap();
    let sweeper = settlement::Sweeper::new(&platform);
    let wake = |event| settlement::woken(&sweeper, event);
    let handler = settlement::handler(&platform);

    let sqs: serde_json::Value = serde_json::from_str(&fixture("allocation-sqs.json")).unwrap();
    let answer = shared::lambda::dispatch(handler.as_ref(), &wake, sqs).await.unwrap();
    // Neither is a settlement message: both go to the dead-letter queue at once.
    assert_eq!(answer["batchItemFailures"].as_array().map(Vec::len), Some(0), "{answer}");
    assert_eq!(platform.queue.dead_letters(QueueName::Settlement, 10).await.unwrap().len(), 2);
    assert_eq!(platform.chain.height().await.unwrap(), 0, "an SQS batch does not sweep");

    // A deal whose window has closed: only the whole sweep closes it.
    let mut deal = draft_deal_value("deal_window");
    deal["state"] = serde_json::json!("open");
    deal["terms"]["opens_at"] = serde_json::json!("2020-01-01T00:00:00Z");
    deal["terms"]["closes_at"] = serde_json::json!("2020-01-02T00:00:00Z");
    let deal: shared::app::deals::Deal = serde_json::from_value(deal).unwrap();
    platform
        .store
        .put(shared::app::deals::deal_item(&deal).unwrap(), shared::ports::store::Condition::None)
        .await
        .unwrap();
    let state = || async { platform.deals().get("deal_window").await.unwrap().unwrap().state };

    let stream: serde_json::Value = serde_json::from_str(&fixture("settlement-stream.json")).unwrap();
    assert_eq!(shared::lambda::dispatch(handler.as_ref(), &wake, stream).await.unwrap(), serde_json::Value::Null);
    assert_eq!(platform.chain.height().await.unwrap(), 1, "the stream drains the outbox");
    assert_eq!(state().await.as_str(), "open", "the stream does not run the sweep");
    let sweep: serde_json::Value = serde_json::from_str(&fixture("settlement-sweep.json")).unwrap();
    assert_eq!(shared::lambda::dispatch(handler.as_ref(), &wake, sweep).await.unwrap(), serde_json::Value::Null);
    assert_ne!(state().await.as_str(), "open", "the schedule runs the sweep, which follows deal windows");
    assert_eq!(platform.chain.height().await.unwrap(), 1, "recorded once, however often woken");
    assert_eq!(platform.chain.balance("deposit:u1:SGD", "SGD", None).await.unwrap(), 4_200);
}

/// The simulator controls exist in the local runner only: the offering function as Lambda
/// serves it answers 404 for them.
#[tokio::test]
async fn the_sim_routes_are_absent_from_the_lambda_build() {
    let (platform, _dir) = platform();
    let sim = || {
        axum::http::Request::post("/sim/bank/deposits")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"virtual_account":"880100000000","amount":"1.00"}"#))
            .unwrap()
    };
    assert_eq!(offering::app(&platform).oneshot(sim()).await.unwrap().status(), 404);
    assert_ne!(local::app(&platform).oneshot(sim()).await.unwrap().status(), 404, "the local runner has them");
}

/// The functions that serve HTTP beside their queue, stream or schedule answer an API
/// Gateway request with their router, and nothing else's routes.
#[tokio::test]
async fn an_api_gateway_request_to_a_function_woken_by_many_sources_reaches_its_router() {
    let (platform, _dir) = platform();
    let request = |path: &str| {
        let mut event: serde_json::Value = serde_json::from_str(&fixture("health-http.json")).unwrap();
        event["rawPath"] = serde_json::json!(path);
        event["requestContext"]["http"]["path"] = serde_json::json!(path);
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default())
    };
    let never = |_| async { Err::<serde_json::Value, shared::lambda::Error>("not an HTTP event".into()) };
    let sweep_never = |_| async { Err::<serde_json::Value, shared::lambda::Error>("not an HTTP event".into()) };
    let answer = |response: serde_json::Value| response["statusCode"].as_u64();

    let (app, handler) = (settlement::app(&platform), settlement::handler(&platform));
    let health = shared::lambda::dispatch_event(app.clone(), handler.as_ref(), &never, request("/health")).await;
    assert_eq!(answer(health.unwrap()), Some(200));
    // A finance route without a token: the settlement function's own router refuses it.
    let view = request("/v1/admin/deals/d1/settlement");
    assert_eq!(
        answer(shared::lambda::dispatch_event(app.clone(), handler.as_ref(), &never, view).await.unwrap()),
        Some(401)
    );
    let elsewhere = request("/v1/deals");
    assert_eq!(
        answer(shared::lambda::dispatch_event(app, handler.as_ref(), &never, elsewhere).await.unwrap()),
        Some(404)
    );

    let (app, handler) = (reconcile::app(&platform), reconcile::handler(&platform));
    let runs = request("/v1/admin/reconciliation/runs");
    assert_eq!(
        answer(shared::lambda::dispatch_event(app, handler.as_ref(), &sweep_never, runs).await.unwrap()),
        Some(401)
    );
}

#[tokio::test]
async fn a_fifo_event_runs_the_assets_commands_and_dead_letters_an_unreadable_one() {
    let (platform, _dir) = platform();
    let market = shared::app::trading::Market::opened(
        "DABS-deal_fixture",
        "deal_fixture",
        "Harbour Point",
        shared::domain::market::Rules::default(),
        100,
        platform.clock.now(),
    );
    platform.store.put(market.item().unwrap(), shared::ports::store::Condition::NotExists).await.unwrap();
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&fixture("matching-sqs.json")).unwrap();
    let unreadable = event.records[1].body.clone().unwrap();
    let response = shared::app::consumer::handle_sqs_event(matching::handler(&platform).as_ref(), event).await;
    assert!(response.batch_item_failures.is_empty());
    let (closed, _) = platform.trading().market("DABS-deal_fixture").await.unwrap();
    assert_eq!(closed.closed_day, Some("2026-11-25".parse().unwrap()), "the close ran");
    let dead = platform.queue.dead_letters(QueueName::Matching, 10).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.message.body.clone()).collect::<Vec<_>>(), [unreadable]);
    // The schedule's event asks every market whose session ended for its close.
    let woken: serde_json::Value = serde_json::from_str(&fixture("matching-schedule.json")).unwrap();
    let report = matching::woken(&platform, woken).await.unwrap();
    assert!(report["closing"].is_array(), "{report}");
}
