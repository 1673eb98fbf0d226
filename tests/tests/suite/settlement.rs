//! After the close, end to end on the local platform: allocation, settlement and DABS
//! issuance, checked against the whole-book rule, the ledger, the chain and the Custody;
//! and the Custody's rejection, its late approval, and a stuck leg retried by finance.

use platform_tests::settle::{
    Dice, FUNDED, assert_issued_after_approval, assert_settled, drive, subscribed_investors, units_for, wait_for_state,
};
use platform_tests::{TestApp, on_both_stores, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::adapters::partners::{Fault, FaultKind};
use shared::domain::ledger::{Account, Kind};

on_both_stores!(investors_see_their_allocations_and_finance_sees_the_settlement);

/// Three investors through the API: undersubscribed, so each gets what they asked for.
async fn investors_see_their_allocations_and_finance_sees_the_settlement(app: TestApp) {
    let deal = app.open_deal("201912345K").await;
    let mut investors = Vec::new();
    for (name, units) in [("ann", 100u64), ("ben", 250), ("cal", 1_000)] {
        let (id, token) = app.accredited_investor(&format!("{name}@example.sg")).await;
        app.deposit(&token, "100000.00").await;
        let (status, sub) = app.subscribe(&token, &deal, "k1", units).await;
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        investors.push((id, token, units));
    }
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    let (ann, ann_token, _) = &investors[0];
    let (status, nothing_yet) = app.get_as("/v1/me/allocations", ann_token).await;
    assert_eq!((status, nothing_yet["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));

    app.close_early(&deal, &finance).await;
    wait_for_state(&app.platform, &deal, "issued", 60).await;
    let ids: Vec<String> = investors.iter().map(|(id, _, _)| id.clone()).collect();
    let settled = assert_settled(&app.platform, &deal, &ids).await;
    assert_eq!(settled.units, 1_350, "undersubscribed: everyone gets what they asked for");
    assert_issued_after_approval(&app.platform, &deal);

    // Investors: their allocation, their holding, their balance.
    let (_, mine) = app.get_as("/v1/me/allocations", ann_token).await;
    let a = &mine["items"][0];
    assert_eq!(
        (a["deal_id"].as_str(), a["units_requested"].as_u64(), a["units_allocated"].as_u64()),
        (Some(deal.as_str()), Some(100), Some(100)),
        "{mine}"
    );
    assert_eq!(
        (a["amount_charged"].as_str(), a["amount_refunded"].as_str(), a["ratio"].as_str()),
        (Some("10000.00"), Some("0.00"), Some("1.000000000000000"))
    );
    let (_, holdings) = app.get_as("/v1/me/holdings", ann_token).await;
    assert_eq!(holdings[0]["units"], 100, "{holdings}");
    assert_eq!(app.sgd(ann_token).await, ("90000.00".into(), "90000.00".into()));
    assert_eq!(settled.investors[ann], ((FUNDED - 1_000_000) as i128, 100));

    // Finance: the run, the settlement, the legs; others may not look.
    let (status, view) = app.get_as(&format!("/v1/admin/deals/{deal}/settlement"), &finance).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!((view["deal_state"].as_str(), view["allocation"]["state"].as_str()), (Some("issued"), Some("complete")));
    assert_eq!(view["allocation"]["units_allocated"], 1_350);
    assert_eq!(view["settlement"]["phase"], "issued");
    assert_eq!(view["settlement"]["amount_charged"], "135000.00");
    assert_eq!(view["settlement"]["decision"]["status"], "approved");
    let legs: Vec<(&str, &str, bool)> = view["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["status"].as_str().unwrap(), l["stuck"].as_bool().unwrap()))
        .collect();
    assert_eq!(legs, [("distribution", "confirmed", false), ("proceeds", "confirmed", false)]);
    assert_eq!(app.get_as(&format!("/v1/admin/deals/{deal}/settlement"), ann_token).await.0, StatusCode::FORBIDDEN);
    let (_, deal_ops) = app.operator("deal-ops@example.sg", &["deal"]).await;
    assert_eq!(app.get_as(&format!("/v1/admin/deals/{deal}/settlement"), &deal_ops).await.0, StatusCode::FORBIDDEN);
    let retry = format!("/v1/admin/settlement/legs/{deal}.proceeds/retry");
    assert_eq!(app.post_as(&retry, &finance, None).await, StatusCode::CONFLICT, "a confirmed leg is not retried");
    assert_eq!(app.post_as("/v1/admin/settlement/legs/nope/retry", &finance, None).await, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_of_thousands_of_subscriptions_closes_allocates_settles_and_issues() {
    let app = spawn_app().await;
    let deal = app.open_deal("201912345K").await;
    let investors = subscribed_investors(&app.platform, &deal, 0..2_500).await;
    let requested: u64 = (0..2_500).map(units_for).sum();
    assert!(requested > 10_000, "oversubscribed");
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;
    wait_for_state(&app.platform, &deal, "issued", 240).await;
    let settled = assert_settled(&app.platform, &deal, &investors).await;
    assert_eq!(settled.units, 10_000, "oversubscribed: the whole supply");
    assert_eq!(settled.charged, 10_000 * 10_000, "10,000 units at 100.00");
    assert_eq!(
        assert_issued_after_approval(&app.platform, &deal),
        settled.investors.values().filter(|(_, u)| *u > 0).count()
    );
    let (_, view) = app.get_as(&format!("/v1/admin/deals/{deal}/settlement"), &finance).await;
    assert_eq!(view["allocation"]["batches"], 25, "{view}");
    assert_eq!(view["allocation"]["ratio"].as_str().unwrap().len(), "0.".len() + 15);
}

/// A deal of `n` in-process investors, closed by finance; answers (deal, investors, finance token).
async fn closed_deal(app: &TestApp, n: usize) -> (String, Vec<String>, String) {
    let deal = app.open_deal("201912345K").await;
    let investors = subscribed_investors(&app.platform, &deal, 0..n).await;
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;
    (deal, investors, finance)
}

fn custody_fault(app: &TestApp, kind: FaultKind, times: u32, delay_ms: u64) {
    app.platform.simulators.as_ref().unwrap().custody.inject(Fault { kind, times, delay_ms });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_distribution_stops_the_deal_with_nothing_issued() {
    let app = spawn_app().await;
    custody_fault(&app, FaultKind::Reject, 1, 0);
    let (deal, investors, finance) = closed_deal(&app, 40).await;
    wait_for_state(&app.platform, &deal, "issuance_rejected", 60).await;
    let (_, view) = app.get_as(&format!("/v1/admin/deals/{deal}/settlement"), &finance).await;
    assert_eq!(view["settlement"]["phase"], "rejected", "{view}");
    assert_eq!(view["settlement"]["decision"]["status"], "rejected");
    assert_eq!(view["settlement"]["units_issued"], 0);
    assert!(view["legs"].as_array().unwrap().iter().any(|l| l["status"] == "rejected"), "{view}");
    // The money settled; no DABS anywhere.
    let ledger = app.platform.ledger();
    let asset = format!("DABS-{deal}");
    let sims = app.platform.simulators.as_ref().unwrap();
    for investor in &investors {
        let holding = Account::id_of(Kind::Holding, investor, &asset);
        assert!(ledger.account(&holding).await.unwrap().is_none(), "no holding opened");
        assert_eq!(sims.custody.balance(&holding, &asset), 0);
    }
    assert!(sims.chain.calls().iter().all(|c| !c.transfer_id.ends_with(":issue")), "nothing recorded on the chain");
    let retry = format!("/v1/admin/settlement/legs/{deal}.distribution/retry");
    assert_eq!(app.post_as(&retry, &finance, None).await, StatusCode::CONFLICT, "a rejection is final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_approval_is_applied_when_it_comes() {
    let app = spawn_app().await;
    custody_fault(&app, FaultKind::ApproveLate, 1, 400);
    let (deal, investors, finance) = closed_deal(&app, 30).await;
    platform_tests::eventually("the distribution waits for approval", || async {
        let (_, view) = app.get_as(&format!("/v1/admin/deals/{deal}/settlement"), &finance).await;
        view["settlement"]["phase"] == "awaiting_approval"
    })
    .await;
    wait_for_state(&app.platform, &deal, "issued", 60).await;
    assert_settled(&app.platform, &deal, &investors).await;
    assert_issued_after_approval(&app.platform, &deal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_leg_is_surfaced_and_finance_retries_it() {
    let mut app = spawn_app().await;
    custody_fault(&app, FaultKind::Fail, 1_000, 0);
    let (deal, investors, finance) = closed_deal(&app, 20).await;
    platform_tests::eventually("the proceeds failed once", || async {
        let (_, view) = app.get_as(&format!("/v1/admin/deals/{deal}/settlement"), &finance).await;
        view["legs"].as_array().is_some_and(|legs| legs.iter().any(|l| l["attempts"].as_u64() >= Some(1)))
    })
    .await;
    // The workers stop so the test moves the clock past the leg's deadline in one step.
    app.running.stop_workers().await;
    app.clock.advance(shared::app::settlement::LEG_DEADLINE + chrono::TimeDelta::seconds(1));
    let mut dice = Dice::new(7);
    let (_, finance) = app.operator("fin2@example.sg", &["finance"]).await;
    let sweeper = settlement::Sweeper::new(&app.platform);
    sweeper.run_once().await.ok();
    let handler = settlement::handler(&app.platform);
    for received in app
        .platform
        .queue
        .receive(shared::ports::queue::QueueName::Settlement, 10, std::time::Duration::ZERO)
        .await
        .unwrap()
    {
        handler.handle(std::slice::from_ref(&received.message)).await;
    }
    let (_, view): (StatusCode, Value) = app.get_as(&format!("/v1/admin/deals/{deal}/settlement"), &finance).await;
    let proceeds = view["legs"].as_array().unwrap().iter().find(|l| l["kind"] == "proceeds").unwrap().clone();
    assert_eq!((proceeds["status"].as_str(), proceeds["stuck"].as_bool()), (Some("stuck"), Some(true)), "{view}");
    assert!(proceeds["last_error"].as_str().unwrap().contains("unavailable"), "{proceeds}");

    // Finance retries once the Custody is back; the retry is audited.
    app.platform.simulators.as_ref().unwrap().custody.clear_faults();
    let (status, leg) =
        app.post_json_as(&format!("/v1/admin/settlement/legs/{deal}.proceeds/retry"), &finance, json!({})).await;
    assert_eq!((status, leg["status"].as_str()), (StatusCode::OK, Some("pending")), "{leg}");
    drive(&app.platform, &app.clock, &deal, &["issued"], 0, &mut dice).await;
    assert_settled(&app.platform, &deal, &investors).await;
    let (_, auditor) = app.operator("audit@example.sg", &["co-operator"]).await;
    let (_, audit) = app.get_as("/v1/admin/audit?limit=100", &auditor).await;
    assert!(
        audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "settlement.leg.retry"),
        "the retry is audited: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custody_callback_is_refused_unless_signed_and_changes_nothing_then() {
    let app = spawn_app().await;
    let secret = app.platform.config.custody_keys.get().await.unwrap().webhook_secret.clone().into_bytes();
    let now = app.platform.clock.now().timestamp();
    let event = json!({"type": "distribution_decided", "event_id": "e1", "reference": "deal_x:distribution",
        "decision": {"status": "approved"}});
    let send = |body: Vec<u8>, timestamp: i64, signature: String| {
        app.client
            .post(app.url("/v1/webhooks/custody"))
            .header("content-type", "application/json")
            .header("custody-timestamp", timestamp.to_string())
            .header("custody-signature", signature)
            .body(body)
            .send()
    };
    let body = serde_json::to_vec(&event).unwrap();
    let signed = shared::domain::webhook::sign(&secret, now, &body);
    let wrong = shared::domain::webhook::sign(b"another key", now, &body);
    assert_eq!(send(body.clone(), now, wrong).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let stale = shared::domain::webhook::sign(&secret, now - 600, &body);
    assert_eq!(send(body.clone(), now - 600, stale).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(send(body.clone(), now, signed).await.unwrap().status(), StatusCode::NOT_FOUND, "no such distribution");
    let garbage = b"{\"type\": \"distribution_decided\"}".to_vec();
    let signed = shared::domain::webhook::sign(&secret, now, &garbage);
    let response = send(garbage, now, signed).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 400, "{problem}");
}
