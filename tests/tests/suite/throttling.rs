//! Login throttling and the security events it and refresh-token reuse leave in the audit log.

use chrono::TimeDelta;
use platform_tests::spawn_app;
use reqwest::StatusCode;
use serde_json::json;
use shared::app::audit::AuditLog;

const EMAIL: &str = "investor@example.sg";
const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn failures_lock_the_account_with_a_growing_delay_and_success_resets_it() {
    let app = spawn_app().await;
    app.logged_in(EMAIL, PASSWORD).await;
    let wrong = json!({"email": EMAIL, "password": "wrong password here"});
    for _ in 0..6 {
        assert_eq!(app.post("/v1/auth/login", wrong.clone()).await.0, StatusCode::UNAUTHORIZED);
    }
    // The sixth failure locked the account for a second: even the right password waits.
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["content-type"], "application/problem+json");

    app.clock.advance(TimeDelta::seconds(1));
    assert_eq!(app.post("/v1/auth/login", wrong.clone()).await.0, StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.status(), response.headers()["retry-after"].to_str().unwrap()),
        (StatusCode::TOO_MANY_REQUESTS, "2")
    );

    app.clock.advance(TimeDelta::seconds(2));
    app.login(EMAIL, PASSWORD).await;
    // Success forgot the account's failures: five free tries again.
    for _ in 0..5 {
        assert_eq!(app.post("/v1/auth/login", wrong.clone()).await.0, StatusCode::UNAUTHORIZED);
    }
    app.login(EMAIL, PASSWORD).await;

    let log = AuditLog::new(app.platform.store.clone(), app.platform.clock.clone());
    let (entries, _) = log.page(50, None).await.unwrap();
    assert_eq!(entries.iter().filter(|e| e.action == "login.lockout").count(), 2);
    assert!(entries.iter().all(|e| !e.target.contains(EMAIL)), "no address in the audit target");
}

#[tokio::test]
async fn an_unknown_address_is_throttled_like_a_known_one() {
    let app = spawn_app().await;
    let guess = json!({"email": "nobody@example.sg", "password": PASSWORD});
    for _ in 0..6 {
        assert_eq!(app.post("/v1/auth/login", guess.clone()).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.post("/v1/auth/login", guess).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn refresh_token_reuse_is_audited() {
    let app = spawn_app().await;
    let tokens = app.logged_in(EMAIL, PASSWORD).await;
    let (_, _) = app.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    app.clock.advance(TimeDelta::seconds(10));
    let (status, _) = app.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let log = AuditLog::new(app.platform.store.clone(), app.platform.clock.clone());
    let (entries, _) = log.page(10, None).await.unwrap();
    assert_eq!(entries[0].action, "session.reuse-detected");
    let today = app.platform.clock.now().date_naive();
    assert!(log.verify_day(app.platform.audit_keyring.as_ref(), today).await.unwrap().is_empty());
}

/// Each attempt is reserved before the password is checked: a burst of parallel guesses
/// gets no more checks than the free tries and the one that sets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_guesses_gets_at_most_the_allowed_password_checks() {
    let app = spawn_app().await;
    app.logged_in(EMAIL, PASSWORD).await;
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..30 {
        let (client, url) = (app.client.clone(), app.url("/v1/auth/login"));
        let body = json!({"email": EMAIL, "password": format!("wrong guess number {i}")});
        guesses.spawn(async move { client.post(url).json(&body).send().await.unwrap().status() });
    }
    let answers = guesses.join_all().await;
    let checked = answers.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = answers.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (6, 24), "{answers:?}");
}

/// A self-registered investor flooding admin routes: each refusal is audited until the
/// caller's limit, then answered 429 with nothing written; operators' approvals go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_admin_calls_is_throttled_and_does_not_flood_the_audit_log() {
    let app = spawn_app().await;
    let intruder = app.logged_in(EMAIL, PASSWORD).await;
    let token = intruder["access_token"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(app.get_as("/v1/admin/users", token).await.0);
    }
    let refused = statuses.iter().filter(|s| **s == StatusCode::FORBIDDEN).count();
    assert_eq!(refused, 21, "{statuses:?}");
    assert!(statuses[21..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let log = AuditLog::new(app.platform.store.clone(), app.platform.clock.clone());
    let (entries, _) = log.page(100, None).await.unwrap();
    assert_eq!(entries.iter().filter(|e| e.action == "users.list" && e.decision == "denied").count(), 21);

    let (_, maker) = app.operator("maker@example.sg", &["member-management"]).await;
    let (_, checker) = app.operator("checker@example.sg", &["co-operator"]).await;
    let (target, _) = app.operator("target@example.sg", &[]).await;
    let grant = json!({"action": "grant", "role": "deal"});
    let (status, request) = app.post_json_as(&format!("/v1/admin/users/{target}/roles"), &maker, grant).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &checker, None).await, StatusCode::OK);
    let today = app.platform.clock.now().date_naive();
    let breaks = log.verify_day(app.platform.audit_keyring.as_ref(), today).await.unwrap();
    assert!(breaks.is_empty(), "the chains are intact: {breaks:?}");
}
