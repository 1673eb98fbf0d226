//! Deposit accounts through the HTTP API: the bank's signed webhook, balances and
//! statements, withdrawals under concurrency and partner faults, and the chain mirror
//! catching up with the ledger.

use platform_tests::{TestApp, eventually, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::domain::webhook;

on_both_stores!(
    a_deposit_is_pending_until_confirmed_and_the_statement_keeps_a_running_balance,
    webhooks_badly_signed_stale_replayed_duplicated_or_for_nobody_credit_nothing,
    fifty_concurrent_withdrawals_of_ten_from_a_hundred_let_exactly_ten_through,
);

/// The secret the bank simulator signs with.
async fn bank_secret(app: &TestApp) -> Vec<u8> {
    app.platform.config.bank_keys.get().await.unwrap().webhook_secret.clone().into_bytes()
}

/// Sends a bank webhook signed with the platform's secret, as of `age` seconds ago.
async fn webhook(app: &TestApp, event: &Value, age: i64) -> (StatusCode, Value) {
    let body = serde_json::to_vec(event).unwrap();
    let at = app.platform.clock.now().timestamp() - age;
    let signature = webhook::sign(&bank_secret(app).await, at, &body);
    send(app, body, &at.to_string(), &signature).await
}

async fn send(app: &TestApp, body: Vec<u8>, timestamp: &str, signature: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/v1/webhooks/bank"))
        .header("content-type", "application/json")
        .header("bank-timestamp", timestamp)
        .header("bank-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn virtual_account(app: &TestApp, token: &str) -> String {
    app.get_as("/v1/accounts/me", token).await.1["virtual_account"].as_str().unwrap().to_owned()
}

fn deposit_event(kind: &str, event_id: &str, deposit_id: &str, va: &str, amount: &str) -> Value {
    json!({"type": kind, "event_id": event_id, "deposit_id": deposit_id, "virtual_account": va, "amount": amount})
}

async fn a_deposit_is_pending_until_confirmed_and_the_statement_keeps_a_running_balance(app: TestApp) {
    let (_, token) = app.funded_investor("ann@example.sg", "0").await;
    let va = virtual_account(&app, &token).await;
    assert!(va.starts_with("8801") && va.len() == 12, "{va}");
    assert_eq!(virtual_account(&app, &token).await, va, "the same reference every time");

    let received = deposit_event("deposit.received", "evt-1", "dep-1", &va, "250.50");
    assert_eq!(webhook(&app, &received, 0).await, (StatusCode::OK, json!({"status": "applied"})));
    let (_, accounts) = app.get_as("/v1/accounts/me", &token).await;
    let sgd = &accounts["accounts"][0];
    assert_eq!((sgd["posted"].as_str(), sgd["pending_in"].as_str()), (Some("0.00"), Some("250.50")));
    assert_eq!(sgd["available"], "0.00", "uncleared money cannot be spent");

    let confirmed = deposit_event("deposit.confirmed", "evt-2", "dep-1", &va, "250.50");
    assert_eq!(webhook(&app, &confirmed, 0).await.0, StatusCode::OK);
    assert_eq!(app.sgd(&token).await, ("250.50".into(), "250.50".into()));

    let returned = deposit_event("deposit.received", "evt-3", "dep-2", &va, "10.00");
    webhook(&app, &returned, 0).await;
    let voided = deposit_event("deposit.returned", "evt-4", "dep-2", &va, "10.00");
    assert_eq!(webhook(&app, &voided, 0).await.0, StatusCode::OK);
    let (_, accounts) = app.get_as("/v1/accounts/me", &token).await;
    assert_eq!(accounts["accounts"][0]["pending_in"], "0.00", "a returned deposit is released");

    // Newest first, each line with the balance after it; paged.
    let (status, page) = app.get_as("/v1/accounts/me/statement?limit=3", &token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let lines: Vec<(&str, &str, &str)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["phase"].as_str().unwrap(), e["amount"].as_str().unwrap(), e["balance"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, [("void", "10.00", "250.50"), ("pending", "10.00", "250.50"), ("post", "250.50", "250.50")]);
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, rest) = app.get_as(&format!("/v1/accounts/me/statement?limit=3&cursor={cursor}"), &token).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        (rest["items"][0]["phase"].as_str(), rest["items"][0]["balance"].as_str()),
        (Some("pending"), Some("0.00"))
    );
    assert!(rest["next_cursor"].is_null());
}

async fn webhooks_badly_signed_stale_replayed_duplicated_or_for_nobody_credit_nothing(app: TestApp) {
    let (_, token) = app.funded_investor("ben@example.sg", "0").await;
    let va = virtual_account(&app, &token).await;
    let event = deposit_event("deposit.confirmed", "evt-a", "dep-a", &va, "100.00");
    let body = serde_json::to_vec(&event).unwrap();
    let now = app.platform.clock.now().timestamp();

    // A signature by another key, over another body, or missing: 401, nothing credited.
    let forged = webhook::sign(b"not the bank", now, &body);
    assert_eq!(send(&app, body.clone(), &now.to_string(), &forged).await.0, StatusCode::UNAUTHORIZED);
    let other = webhook::sign(&bank_secret(&app).await, now, b"{}");
    assert_eq!(send(&app, body.clone(), &now.to_string(), &other).await.0, StatusCode::UNAUTHORIZED);
    let (status, problem) = send(&app, body.clone(), &now.to_string(), "").await;
    assert_eq!((status, problem["status"].as_u64()), (StatusCode::UNAUTHORIZED, Some(401)));
    // Outside the five-minute window, either way.
    assert_eq!(webhook(&app, &event, 301).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(webhook(&app, &event, -301).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.sgd(&token).await.0, "0.00");

    // For a virtual account nobody has: refused by field name.
    let nobody = deposit_event("deposit.confirmed", "evt-b", "dep-b", "880100000000", "100.00");
    let (status, problem) = webhook(&app, &nobody, 0).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "virtual_account");
    let (status, problem) = webhook(&app, &json!({"type": "deposit.confirmed", "event_id": "x"}), 0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // Applied once; the same event again is a duplicate; the same deposit under a new
    // event id (the bank notifying twice) moves nothing either.
    assert_eq!(webhook(&app, &event, 0).await, (StatusCode::OK, json!({"status": "applied"})));
    assert_eq!(webhook(&app, &event, 10).await, (StatusCode::OK, json!({"status": "duplicate"})));
    let again = deposit_event("deposit.confirmed", "evt-c", "dep-a", &va, "100.00");
    assert_eq!(webhook(&app, &again, 0).await, (StatusCode::OK, json!({"status": "applied"})));
    // The same deposit with another amount contradicts the ledger.
    let changed = deposit_event("deposit.confirmed", "evt-d", "dep-a", &va, "999.00");
    assert_eq!(webhook(&app, &changed, 0).await.0, StatusCode::CONFLICT);
    // A return after the deposit cleared cannot void it.
    let late = deposit_event("deposit.returned", "evt-e", "dep-a", &va, "100.00");
    assert_eq!(webhook(&app, &late, 0).await.0, StatusCode::CONFLICT);
    assert_eq!(app.sgd(&token).await, ("100.00".into(), "100.00".into()), "credited exactly once");
}

async fn fifty_concurrent_withdrawals_of_ten_from_a_hundred_let_exactly_ten_through(app: TestApp) {
    let (user_id, token) = app.funded_investor("cat@example.sg", "100.00").await;
    assert_eq!(app.sgd(&token).await, ("100.00".into(), "100.00".into()));
    let requests = (0..50).map(|i| {
        let (app, token) = (&app, &token);
        async move { app.withdraw(token, &format!("w-{i}"), "10.00").await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let accepted = answers.iter().filter(|(s, _)| *s == StatusCode::ACCEPTED).count();
    let refused: Vec<&Value> =
        answers.iter().filter(|(s, _)| *s == StatusCode::UNPROCESSABLE_ENTITY).map(|(_, b)| b).collect();
    assert_eq!((accepted, refused.len()), (10, 40), "{answers:?}");
    assert!(refused.iter().all(|p| p["status"] == 422 && p["type"].as_str().is_some_and(|t| !t.is_empty())));
    assert_eq!(app.sgd(&token).await.1, "0.00", "everything is held");
    // The bank settles each payout; every hold is posted.
    eventually("every payout settled", || async { app.sgd(&token).await == ("0.00".into(), "0.00".into()) }).await;

    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    let (status, totals) = app.get_as("/v1/admin/ledger/totals", &finance).await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    let sgd = totals.as_array().unwrap().iter().find(|t| t["asset"] == "SGD").unwrap();
    assert_eq!((sgd["balanced"].as_bool(), sgd["debits_posted"].as_str()), (Some(true), Some("200.00")));
    let account = format!("deposit:{user_id}:SGD");
    let (status, seen) = app.get_as(&format!("/v1/admin/accounts/{account}"), &finance).await;
    assert_eq!((status, seen["posted"].as_str()), (StatusCode::OK, Some("0.00")));
    assert_eq!(app.get_as(&format!("/v1/admin/accounts/{account}"), &token).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get_as("/v1/admin/ledger/totals", &token).await.0, StatusCode::FORBIDDEN);
}

/// A bank that adds a field to its events must not stop deposits: fields the platform does
/// not know are ignored (the signature still covers the whole body).
#[tokio::test]
async fn a_bank_webhook_with_fields_the_platform_does_not_know_is_still_applied() {
    let app = platform_tests::spawn_app().await;
    let (_, token) = app.funded_investor("fields@example.sg", "0").await;
    let va = virtual_account(&app, &token).await;
    let mut received = deposit_event("deposit.received", "evt-new", "dep-new", &va, "10.00");
    received["value_date"] = json!("2026-11-30");
    received["channel"] = json!({"scheme": "FAST", "reference": "F123"});
    assert_eq!(webhook(&app, &received, 0).await, (StatusCode::OK, json!({"status": "applied"})));
    let (_, accounts) = app.get_as("/v1/accounts/me", &token).await;
    let sgd = accounts["accounts"].as_array().unwrap().iter().find(|a| a["asset"] == "SGD").unwrap().clone();
    assert_eq!(sgd["pending_in"], "10.00", "{accounts}");
}
