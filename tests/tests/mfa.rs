//! TOTP enrolment and the two-step login, through the HTTP API.

use chrono::TimeDelta;
use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::domain::totp;

on_both_stores!(
    with_totp_enrolled_login_takes_a_code_and_reaches_level_two,
    a_used_code_cannot_log_in_again,
    a_challenge_dies_after_five_wrong_codes_or_five_minutes,
    wrong_codes_count_across_challenges_and_lock_the_second_factor_until_a_growing_delay_passes,
    fifty_parallel_wrong_codes_get_at_most_five_checks_and_then_429,
);

const EMAIL: &str = "operator@example.sg";
const PASSWORD: &str = "correct horse battery staple";

fn code(app: &TestApp, secret: &[u8], offset: i64) -> String {
    let now = app.platform.clock.now().timestamp() + offset;
    format!("{:06}", totp::code_for_step(secret, totp::step_at(now)))
}

/// Logs in, enrols and confirms TOTP; returns the secret.
async fn enrolled(app: &TestApp) -> Vec<u8> {
    let tokens = app.logged_in(EMAIL, PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let response = app.client.post(app.url("/v1/auth/mfa/totp")).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let enrollment: Value = response.json().await.unwrap();
    let secret_text = enrollment["secret"].as_str().unwrap();
    assert!(
        enrollment["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/DABS:operator%40example.sg?secret=")
    );
    let secret = totp::from_base32(secret_text).unwrap();
    assert_eq!(secret.len(), 20);
    let wrong = json!({"code": "000000"});
    let confirm = json!({"code": code(app, &secret, 0)});
    if wrong["code"] != confirm["code"] {
        assert_eq!(app.post_as("/v1/auth/mfa/totp/confirm", access, Some(wrong)).await, StatusCode::BAD_REQUEST);
    }
    assert_eq!(app.post_as("/v1/auth/mfa/totp/confirm", access, Some(confirm)).await, StatusCode::NO_CONTENT);
    let again = app.client.post(app.url("/v1/auth/mfa/totp")).bearer_auth(access).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    secret
}

async fn challenge(app: &TestApp) -> String {
    let (status, body) = app.post("/v1/auth/login", json!({"email": EMAIL, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none());
    body["challenge"].as_str().unwrap().to_owned()
}

async fn with_totp_enrolled_login_takes_a_code_and_reaches_level_two(app: TestApp) {
    let secret = enrolled(&app).await;
    let challenge = challenge(&app).await;
    // The confirmation used this step's code: the next step's code logs in.
    app.clock.advance(TimeDelta::seconds(30));
    let (status, tokens) =
        app.post("/v1/auth/login/mfa", json!({"challenge": challenge, "code": code(&app, &secret, 0)})).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (_, me) = app.get_as("/v1/me", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(me["level"], 2);
    // A challenge is good once.
    let (status, _) =
        app.post("/v1/auth/login/mfa", json!({"challenge": challenge, "code": code(&app, &secret, 0)})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn a_used_code_cannot_log_in_again(app: TestApp) {
    let secret = enrolled(&app).await;
    // The confirmation spent this step's code.
    let (status, _) = app
        .post("/v1/auth/login/mfa", json!({"challenge": challenge(&app).await, "code": code(&app, &secret, 0)}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn a_challenge_dies_after_five_wrong_codes_or_five_minutes(app: TestApp) {
    let secret = enrolled(&app).await;
    app.clock.advance(TimeDelta::seconds(30));
    let first = challenge(&app).await;
    let right = code(&app, &secret, 0);
    let wrong = if right == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        let (status, _) = app.post("/v1/auth/login/mfa", json!({"challenge": first, "code": wrong})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app.post("/v1/auth/login/mfa", json!({"challenge": first, "code": right})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let second = challenge(&app).await;
    app.clock.advance(TimeDelta::minutes(5) + TimeDelta::seconds(1));
    let (status, _) =
        app.post("/v1/auth/login/mfa", json!({"challenge": second, "code": code(&app, &secret, 0)})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A phished password gives any number of challenges; wrong codes count per account
/// across them, and a correct password does not reset the count.
async fn wrong_codes_count_across_challenges_and_lock_the_second_factor_until_a_growing_delay_passes(app: TestApp) {
    let secret = enrolled(&app).await;
    app.clock.advance(TimeDelta::seconds(30));
    let right = code(&app, &secret, 0);
    let wrong = if right == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        let (status, _) =
            app.post("/v1/auth/login/mfa", json!({"challenge": challenge(&app).await, "code": wrong})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = app
        .client
        .post(app.url("/v1/auth/login/mfa"))
        .json(&json!({"challenge": challenge(&app).await, "code": right}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "even the right code waits");
    assert_eq!(response.headers()["retry-after"], "60");
    let log = shared::app::audit::AuditLog::new(app.platform.store.clone(), app.platform.clock.clone());
    let (entries, _) = log.page(20, None).await.unwrap();
    let lockouts: Vec<_> = entries.iter().filter(|e| e.action == "mfa.lockout").collect();
    assert_eq!(lockouts.len(), 1, "{entries:?}");
    assert_eq!(lockouts[0].target, "second-factor");

    // A minute on, one more wrong code locks for two; then the right code logs in.
    app.clock.advance(TimeDelta::minutes(1));
    let (status, _) = app.post("/v1/auth/login/mfa", json!({"challenge": challenge(&app).await, "code": wrong})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.post("/v1/auth/login/mfa", json!({"challenge": challenge(&app).await, "code": right})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(TimeDelta::minutes(2));
    let right = code(&app, &secret, 0);
    let (status, body) =
        app.post("/v1/auth/login/mfa", json!({"challenge": challenge(&app).await, "code": right})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Every guess is reserved before its code is checked: a burst gets no more checks than
/// the limit, however the requests interleave.
async fn fifty_parallel_wrong_codes_get_at_most_five_checks_and_then_429(app: TestApp) {
    let secret = enrolled(&app).await;
    app.clock.advance(TimeDelta::seconds(30));
    let right = code(&app, &secret, 0);
    let wrong = if right == "123456" { "654321" } else { "123456" };
    let mut challenges = Vec::new();
    for _ in 0..5 {
        challenges.push(challenge(&app).await);
    }
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (client, url) = (app.client.clone(), app.url("/v1/auth/login/mfa"));
        let body = json!({"challenge": challenges[i % 5], "code": wrong});
        guesses.spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            let status = response.status();
            let problem: Value = response.json().await.unwrap();
            (status, problem["detail"].as_str().unwrap_or_default().to_owned())
        });
    }
    let answers = guesses.join_all().await;
    let checked = answers.iter().filter(|(s, d)| *s == StatusCode::UNAUTHORIZED && d == "invalid code").count();
    let refused = answers.iter().filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!((1..=5).contains(&checked), "{checked} codes checked: {answers:?}");
    assert!(refused >= 40, "{refused} refused: {answers:?}");
    assert!(
        answers.iter().all(|(s, _)| matches!(*s, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS)),
        "{answers:?}"
    );
}
