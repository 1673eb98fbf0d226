//! Withdrawals: who may withdraw, the idempotency key, and the bank failing or timing out.

use platform_tests::{eventually, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use shared::adapters::partners::{Fault, FaultKind};
use shared::app::failure::Failure;
use shared::ports::store::{Condition, Item, Key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawing_needs_level_two_and_a_second_factor_proved_in_the_last_fifteen_minutes() {
    let app = spawn_app().await;
    let level_one = app.logged_in("one@example.sg", "correct horse battery staple").await;
    let level_one = level_one["access_token"].as_str().unwrap();
    let (status, problem) = app.withdraw(level_one, "k1", "1.00").await;
    assert_eq!((status, problem["status"].as_u64()), (StatusCode::FORBIDDEN, Some(403)), "{problem}");

    let (_, tokens) = app.operator_tokens("two@example.sg", &[]).await;
    app.deposit(tokens["access_token"].as_str().unwrap(), "50.00").await;
    // Sixteen minutes on (refreshing within the idle life), the refreshed token still
    // carries the login's second-factor time.
    let mut refresh_token = tokens["refresh_token"].clone();
    let mut refreshed = json!(null);
    for minutes in [8, 8] {
        app.clock.advance(chrono::TimeDelta::minutes(minutes));
        let (status, answer) = app.post("/v1/auth/refresh", json!({"refresh_token": refresh_token})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        refresh_token = answer["refresh_token"].clone();
        refreshed = answer;
    }
    let stale = refreshed["access_token"].as_str().unwrap();
    let (status, problem) = app.withdraw(stale, "k2", "1.00").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("last 15 minutes"), "{problem}");
    assert_eq!(app.sgd(stale).await, ("50.00".into(), "50.00".into()), "nothing held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_answers_the_first_withdrawal_and_bad_input_changes_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.funded_investor("dee@example.sg", "30.00").await;

    let response = app
        .client
        .post(app.url("/v1/accounts/me/withdrawals"))
        .bearer_auth(&token)
        .json(&json!({"amount": "1.00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    // Breaking the schema's pattern is a 400; zero meets it and is refused, 422.
    for (amount, status) in
        [("-5", StatusCode::BAD_REQUEST), ("1.001", StatusCode::BAD_REQUEST), ("abc", StatusCode::BAD_REQUEST)]
            .into_iter()
            .chain([("0", StatusCode::UNPROCESSABLE_ENTITY)])
    {
        let (answered, problem) = app.withdraw(&token, "bad", amount).await;
        assert_eq!((answered, problem["errors"][0]["field"].as_str()), (status, Some("amount")), "{amount}");
    }
    let (status, problem) = app.withdraw(&token, "too-much", "30.01").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    // The same refused key answers the same refusal, even with money now available.
    assert_eq!(app.withdraw(&token, "too-much", "30.01").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.sgd(&token).await, ("30.00".into(), "30.00".into()));

    let (status, first) = app.withdraw(&token, "rent", "12.50").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = app.withdraw(&token, "rent", "12.50").await;
    assert_eq!((status, &again["id"]), (StatusCode::ACCEPTED, &first["id"]), "the same withdrawal");
    let (status, problem) = app.withdraw(&token, "rent", "13.00").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let id = first["id"].as_str().unwrap();
    eventually("the payout settled", || async {
        app.get_as(&format!("/v1/accounts/me/withdrawals/{id}"), &token).await.1["status"] == "settled"
    })
    .await;
    assert_eq!(app.sgd(&token).await, ("17.50".into(), "17.50".into()), "paid out once");
    // Another investor cannot see it.
    let (_, other) = app.funded_investor("eve@example.sg", "0").await;
    assert_eq!(app.get_as(&format!("/v1/accounts/me/withdrawals/{id}"), &other).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_the_bank_fails_is_released_and_one_that_timed_out_is_instructed_again_and_paid_once() {
    let app = spawn_app().await;
    let (_, token) = app.funded_investor("fay@example.sg", "100.00").await;
    let fault = |kind: &str| json!({"partner": "bank", "kind": kind, "times": 1});

    assert_eq!(app.post("/sim/faults", fault("fail")).await.0, StatusCode::NO_CONTENT);
    let (status, failed) = app.withdraw(&token, "f1", "40.00").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{failed}");
    let id = failed["id"].as_str().unwrap().to_owned();
    eventually("the failure reported", || async {
        app.get_as(&format!("/v1/accounts/me/withdrawals/{id}"), &token).await.1["status"] == "failed"
    })
    .await;
    assert_eq!(app.sgd(&token).await, ("100.00".into(), "100.00".into()), "the hold was released");

    // The bank takes the instruction but the answer is lost: the withdrawal stays pending
    // (held), is instructed again by the sweep, and the bank pays it once.
    app.post("/sim/faults", fault("timeout_after_commit")).await;
    let (status, pending) = app.withdraw(&token, "t1", "25.00").await;
    assert_eq!((status, pending["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{pending}");
    let id = pending["id"].as_str().unwrap().to_owned();
    // Past the retry delay the sweep instructs it again; the bank knows the reference.
    app.clock.advance(chrono::TimeDelta::seconds(31));
    eventually("the payout settled", || async {
        app.get_as(&format!("/v1/accounts/me/withdrawals/{id}"), &token).await.1["status"] == "settled"
    })
    .await;
    assert_eq!(app.sgd(&token).await, ("75.00".into(), "75.00".into()));
    let calls: serde_json::Value =
        app.client.get(app.url("/sim/bank/calls")).send().await.unwrap().json().await.unwrap();
    let settled = calls["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["event"]["type"] == "payout.settled" && c["event"]["reference"] == id.as_str())
        .count();
    assert_eq!(settled, 1, "the bank paid once");
}

/// The bank took the first instruction but its answer was lost, and it pays a few seconds
/// later. The sweep's retry meets a `429`: the withdrawal must stay pending and held, or
/// the investor could withdraw the same money again while the bank pays the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_throttled_on_its_retry_keeps_its_hold_and_is_paid_once() {
    let mut app = spawn_app().await;
    let (_, token) = app.funded_investor("gus@example.sg", "100.00").await;
    app.running.stop_workers().await;
    let bank = app.platform.simulators.as_ref().unwrap().bank.clone();
    let deposits = app.platform.deposit_accounts();

    bank.faults.inject(Fault { kind: FaultKind::TimeoutAfterCommit, times: 1, delay_ms: 5_000 });
    let (status, pending) = app.withdraw(&token, "slow", "25.00").await;
    assert_eq!((status, pending["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{pending}");
    let id = pending["id"].as_str().unwrap().to_owned();

    bank.faults.inject(Fault { kind: FaultKind::Throttle, times: 1, delay_ms: 0 });
    app.clock.advance(chrono::TimeDelta::seconds(31));
    let retried = deposits.retry_pending(10).await.unwrap();
    assert_eq!(retried.tried, 1);
    let throttled = |f: &Failure| f.subject == id && !f.permanent && f.reason.contains("throttling");
    assert!(retried.failed.iter().any(throttled), "a throttled payout is retried: {retried:?}");
    let (_, now) = app.get_as(&format!("/v1/accounts/me/withdrawals/{id}"), &token).await;
    assert_eq!(now["status"], "pending", "{now}");
    assert_eq!(app.sgd(&token).await, ("100.00".into(), "75.00".into()), "still held");
    let (status, again) = app.withdraw(&token, "again", "80.00").await;
    assert_eq!((status, again["status"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, None), "{again}");

    eventually("the first instruction paid", || async {
        app.get_as(&format!("/v1/accounts/me/withdrawals/{id}"), &token).await.1["status"] == "settled"
    })
    .await;
    assert_eq!(app.sgd(&token).await, ("75.00".into(), "75.00".into()), "paid once");
}

/// Only the bank's refusal releases a hold; a `409` (the reference is taken) is looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payout_releases_its_hold_and_a_conflicting_retry_finds_the_first_instruction() {
    let mut app = spawn_app().await;
    let (_, token) = app.funded_investor("hal@example.sg", "100.00").await;
    app.running.stop_workers().await;
    let bank = app.platform.simulators.as_ref().unwrap().bank.clone();

    bank.faults.inject(Fault { kind: FaultKind::Refuse, times: 1, delay_ms: 0 });
    let (status, refused) = app.withdraw(&token, "closed", "40.00").await;
    assert_eq!((status, refused["status"].as_str()), (StatusCode::ACCEPTED, Some("failed")), "{refused}");
    assert_eq!(app.sgd(&token).await, ("100.00".into(), "100.00".into()), "released");

    bank.faults.inject(Fault { kind: FaultKind::TimeoutAfterCommit, times: 1, delay_ms: 5_000 });
    let (_, pending) = app.withdraw(&token, "lost", "10.00").await;
    let id = pending["id"].as_str().unwrap().to_owned();
    bank.faults.inject(Fault { kind: FaultKind::Conflict, times: 1, delay_ms: 0 });
    app.clock.advance(chrono::TimeDelta::seconds(31));
    let retried = app.platform.deposit_accounts().retry_pending(10).await.unwrap();
    assert_eq!((retried.tried, retried.failed.len()), (1, 0), "{retried:?}");
    let (_, now) = app.get_as(&format!("/v1/accounts/me/withdrawals/{id}"), &token).await;
    assert_eq!(now["status"], "instructed", "{now}");
    assert_eq!(app.sgd(&token).await, ("100.00".into(), "90.00".into()), "held until paid");
}

/// A sweep keeps each failure's kind up to where it decides: an entry that can never be
/// done (here a pending withdrawal that does not read) is reported for an operator and
/// neither fails the sweep nor stops the entries after it; a payout the bank throttles
/// fails the sweep, which is run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_reports_what_failed_for_good_and_fails_only_on_what_may_pass() {
    let mut app = spawn_app().await;
    let (_, token) = app.funded_investor("ivy@example.sg", "100.00").await;
    app.running.stop_workers().await;
    let bank = app.platform.simulators.as_ref().unwrap().bank.clone();
    let unreadable = Item::new(Key::new("TEST#unreadable-withdrawal", "WITHDRAWAL"), &"not a withdrawal")
        .unwrap()
        .with_index("WITHDRAWALS#PENDING", "0#unreadable");
    app.platform.store.put(unreadable, Condition::None).await.unwrap();
    bank.faults.inject(Fault { kind: FaultKind::TimeoutAfterCommit, times: 1, delay_ms: 5_000 });
    let (_, pending) = app.withdraw(&token, "slow", "25.00").await;
    let id = pending["id"].as_str().unwrap().to_owned();
    app.clock.advance(chrono::TimeDelta::seconds(31));
    let sweeper = settlement::Sweeper::new(&app.platform);

    bank.faults.inject(Fault { kind: FaultKind::Throttle, times: 1, delay_ms: 0 });
    let incomplete = sweeper.run_once().await.expect_err("a throttled payout fails the sweep");
    // The withdrawal's entry sorts after the unreadable one: it was tried all the same.
    assert!(incomplete.0.iter().any(|f| f.subject == id && f.reason.contains("throttling")), "{incomplete}");
    assert!(incomplete.0.iter().all(|f| !f.permanent), "only what may pass fails it: {incomplete}");

    let swept = sweeper.run_once().await.expect("nothing is left that may pass");
    let reported: Vec<_> = swept.permanent.iter().map(|f| (f.subject.as_str(), f.permanent)).collect();
    assert_eq!(reported, [("TEST#unreadable-withdrawal", true)], "{swept:?}");
    eventually("the payout paid", || async {
        app.get_as(&format!("/v1/accounts/me/withdrawals/{id}"), &token).await.1["status"] == "settled"
    })
    .await;
    assert_eq!(app.sgd(&token).await, ("75.00".into(), "75.00".into()), "paid once");
}
