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
        assert_eq!(
            app.post_as("/v1/auth/mfa/totp/confirm", access, Some(wrong)).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
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

/// Operators' second factor is the session's, read from the token: an operator whose
/// session began before enrolment is refused until they log in with the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_session_that_began_before_enrolment_carries_no_second_factor() {
    let app = platform_tests::spawn_app().await;
    app.platform.accounts().create_verified(EMAIL, PASSWORD, &["super-admin"], 2).await.unwrap();
    let tokens = app.login(EMAIL, PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.get_as("/v1/admin/users", access).await.0, StatusCode::FORBIDDEN, "level 2 alone is not enough");

    let response = app.client.post(app.url("/v1/auth/mfa/totp")).bearer_auth(access).send().await.unwrap();
    let secret = totp::from_base32(response.json::<Value>().await.unwrap()["secret"].as_str().unwrap()).unwrap();
    let confirm = json!({"code": code(&app, &secret, 0)});
    assert_eq!(app.post_as("/v1/auth/mfa/totp/confirm", access, Some(confirm)).await, StatusCode::NO_CONTENT);
    let (status, refreshed) = app.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    assert_eq!(status, StatusCode::OK);
    let refreshed = refreshed["access_token"].as_str().unwrap();
    assert_eq!(app.get_as("/v1/admin/users", refreshed).await.0, StatusCode::FORBIDDEN, "enrolled after login");

    app.clock.advance(TimeDelta::seconds(30));
    let (status, tokens) = app
        .post("/v1/auth/login/mfa", json!({"challenge": challenge(&app).await, "code": code(&app, &secret, 0)}))
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(app.get_as("/v1/admin/users", tokens["access_token"].as_str().unwrap()).await.0, StatusCode::OK);
}

/// A stolen access token alone cannot enrol the thief's authenticator: enrolment needs a
/// login in the last 15 minutes, however often the session was refreshed since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_a_second_factor_needs_a_recent_login() {
    let app = platform_tests::spawn_app().await;
    let tokens = app.logged_in(EMAIL, PASSWORD).await;
    app.clock.advance(TimeDelta::minutes(9));
    let (_, tokens) = app.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    app.clock.advance(TimeDelta::minutes(7));
    let (status, tokens) = app.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let stale = tokens["access_token"].as_str().unwrap();
    let response = app.client.post(app.url("/v1/auth/mfa/totp")).bearer_auth(stale).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let fresh = app.login(EMAIL, PASSWORD).await;
    let response = app.client.post(app.url("/v1/auth/mfa/totp")).bearer_auth(fresh["access_token"].as_str().unwrap());
    assert_eq!(response.send().await.unwrap().status(), StatusCode::CREATED);
}

/// The key URI carries any valid address: `+`, `'`, `%`, `&`, `/` and `?` are escaped, and
/// the label decodes back to the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otpauth_uri_encodes_any_valid_address() {
    let app = platform_tests::spawn_app().await;
    let email = "o'brien+tag%1&x/y?z@example.sg";
    let tokens = app.logged_in(email, PASSWORD).await;
    let response = app.client.post(app.url("/v1/auth/mfa/totp")).bearer_auth(tokens["access_token"].as_str().unwrap());
    let enrollment: Value = response.send().await.unwrap().json().await.unwrap();
    let uri = enrollment["otpauth_uri"].as_str().unwrap();
    let (label, query) = uri.strip_prefix("otpauth://totp/").unwrap().split_once('?').unwrap();
    let (issuer, account) = label.split_once(':').unwrap();
    assert_eq!(issuer, "DABS");
    assert_eq!(shared::domain::uri::percent_decode(account).as_deref(), Some(email));
    let params: Vec<&str> = query.split('&').collect();
    assert_eq!(params.len(), 5, "no parameter broken up by the address: {uri}");
    assert!(params.contains(&format!("secret={}", enrollment["secret"].as_str().unwrap()).as_str()));
}
