//! Login, refresh rotation with reuse detection, lifetimes and revocation, through the
//! HTTP API of the local platform.

use chrono::TimeDelta;
use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};

const EMAIL: &str = "investor@example.sg";
const PASSWORD: &str = "correct horse battery staple";

async fn refresh(app: &TestApp, token: &Value) -> (StatusCode, Value) {
    app.post("/v1/auth/refresh", json!({"refresh_token": token["refresh_token"]})).await
}

on_both_stores!(
    login_answers_bearer_tokens_that_identify_the_caller,
    a_wrong_password_and_an_unknown_email_get_the_same_401,
    rotation_returns_a_new_pair_and_the_old_refresh_token_then_fails,
    a_spent_token_after_the_grace_window_kills_the_newest_token_of_its_family,
    a_token_two_generations_old_is_reuse_even_inside_the_grace_window,
    twenty_parallel_refreshes_of_one_token_yield_exactly_one_successor,
    an_unused_refresh_token_dies_after_ten_idle_minutes,
    rotation_never_extends_the_session_past_twelve_hours,
    logout_ends_one_session_and_logout_all_ends_every_session,
    changing_the_password_revokes_every_session,
    an_access_token_expires_after_ten_minutes_and_a_missing_one_is_401,
);

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

async fn login_answers_bearer_tokens_that_identify_the_caller(app: TestApp) {
    let tokens = app.logged_in(EMAIL, PASSWORD).await;
    assert_eq!((tokens["token_type"].as_str(), tokens["expires_in"].as_i64()), (Some("Bearer"), Some(600)));
    let (status, me) = app.get_as("/v1/me", access(&tokens)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["level"], 1);
    assert!(me["user_id"].as_str().unwrap().starts_with("usr_"));
    let (_, jwks) = app.get_as("/.well-known/jwks.json", "").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
}

async fn a_wrong_password_and_an_unknown_email_get_the_same_401(app: TestApp) {
    app.logged_in(EMAIL, PASSWORD).await;
    let (wrong, body_wrong) = app.post("/v1/auth/login", json!({"email": EMAIL, "password": "not the password"})).await;
    let (unknown, body_unknown) =
        app.post("/v1/auth/login", json!({"email": "who@example.sg", "password": PASSWORD})).await;
    assert_eq!((wrong, unknown), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(body_wrong, body_unknown);
}

async fn rotation_returns_a_new_pair_and_the_old_refresh_token_then_fails(app: TestApp) {
    let first = app.logged_in(EMAIL, PASSWORD).await;
    let (status, second) = refresh(&app, &first).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    app.clock.advance(TimeDelta::seconds(6));
    let (status, body) = refresh(&app, &first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["type"], "/problems/unauthorized");
}

async fn a_spent_token_after_the_grace_window_kills_the_newest_token_of_its_family(app: TestApp) {
    let first = app.logged_in(EMAIL, PASSWORD).await;
    let (_, second) = refresh(&app, &first).await;
    app.clock.advance(TimeDelta::seconds(6));
    assert_eq!(refresh(&app, &first).await.0, StatusCode::UNAUTHORIZED);
    // The thief's or the owner's newest token is dead too, and so are its access tokens.
    assert_eq!(refresh(&app, &second).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_as("/v1/me", access(&second)).await.0, StatusCode::UNAUTHORIZED);
}

async fn a_token_two_generations_old_is_reuse_even_inside_the_grace_window(app: TestApp) {
    let first = app.logged_in(EMAIL, PASSWORD).await;
    let (_, second) = refresh(&app, &first).await;
    let (_, third) = refresh(&app, &second).await;
    assert_eq!(refresh(&app, &first).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&app, &third).await.0, StatusCode::UNAUTHORIZED);
}

async fn twenty_parallel_refreshes_of_one_token_yield_exactly_one_successor(app: TestApp) {
    let first = app.logged_in(EMAIL, PASSWORD).await;
    let answers = futures_util_join(&app, &first, 20).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
    let successors: std::collections::HashSet<&str> =
        answers.iter().map(|(_, body)| body["refresh_token"].as_str().unwrap()).collect();
    assert_eq!(successors.len(), 1, "all twenty got the same successor");
    // The successor is live and rotates once more.
    let (status, _) = refresh(&app, &answers[0].1).await;
    assert_eq!(status, StatusCode::OK);
}

async fn futures_util_join(app: &TestApp, token: &Value, n: usize) -> Vec<(StatusCode, Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url, body) =
            (app.client.clone(), app.url("/v1/auth/refresh"), json!({"refresh_token": token["refresh_token"]}));
        tasks.spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.unwrap());
    }
    answers
}

async fn an_unused_refresh_token_dies_after_ten_idle_minutes(app: TestApp) {
    let tokens = app.logged_in(EMAIL, PASSWORD).await;
    app.clock.advance(TimeDelta::minutes(10));
    assert_eq!(refresh(&app, &tokens).await.0, StatusCode::UNAUTHORIZED);
}

async fn rotation_never_extends_the_session_past_twelve_hours(app: TestApp) {
    let mut tokens = app.logged_in(EMAIL, PASSWORD).await;
    let mut elapsed = TimeDelta::zero();
    loop {
        app.clock.advance(TimeDelta::minutes(9));
        elapsed += TimeDelta::minutes(9);
        let (status, next) = refresh(&app, &tokens).await;
        if elapsed >= TimeDelta::hours(12) {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            break;
        }
        assert_eq!(status, StatusCode::OK, "at {elapsed}");
        // Access tokens never outlive the session.
        assert!(next["expires_in"].as_i64().unwrap() <= (TimeDelta::hours(12) - elapsed).num_seconds());
        tokens = next;
    }
}

async fn logout_ends_one_session_and_logout_all_ends_every_session(app: TestApp) {
    let phone = app.logged_in(EMAIL, PASSWORD).await;
    let laptop = app.login(EMAIL, PASSWORD).await;
    let tablet = app.login(EMAIL, PASSWORD).await;
    let (_, list) = app.get_as("/v1/auth/sessions", access(&phone)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);

    assert_eq!(app.post_as("/v1/auth/logout", access(&phone), None).await, StatusCode::NO_CONTENT);
    assert_eq!(app.get_as("/v1/me", access(&phone)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&app, &phone).await.0, StatusCode::UNAUTHORIZED);
    let (_, list) = app.get_as("/v1/auth/sessions", access(&laptop)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    assert_eq!(app.post_as("/v1/auth/logout-all", access(&laptop), None).await, StatusCode::NO_CONTENT);
    for device in [&laptop, &tablet] {
        assert_eq!(app.get_as("/v1/me", access(device)).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(&app, device).await.0, StatusCode::UNAUTHORIZED);
    }
}

async fn changing_the_password_revokes_every_session(app: TestApp) {
    let one = app.logged_in(EMAIL, PASSWORD).await;
    let two = app.login(EMAIL, PASSWORD).await;
    let wrong = json!({"current_password": "not it at all", "new_password": "a brand new passphrase"});
    assert_eq!(app.post_as("/v1/auth/password", access(&one), Some(wrong)).await, StatusCode::UNPROCESSABLE_ENTITY);
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
    assert_eq!(app.post_as("/v1/auth/password", access(&one), Some(change)).await, StatusCode::NO_CONTENT);
    for session in [&one, &two] {
        assert_eq!(app.get_as("/v1/me", access(session)).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(&app, session).await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app.post("/v1/auth/login", json!({"email": EMAIL, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.login(EMAIL, "a brand new passphrase").await;
}

async fn an_access_token_expires_after_ten_minutes_and_a_missing_one_is_401(app: TestApp) {
    let tokens = app.logged_in(EMAIL, PASSWORD).await;
    app.clock.advance(TimeDelta::minutes(10) + TimeDelta::seconds(29));
    assert_eq!(app.get_as("/v1/me", access(&tokens)).await.0, StatusCode::OK, "inside the leeway");
    app.clock.advance(TimeDelta::seconds(2));
    assert_eq!(app.get_as("/v1/me", access(&tokens)).await.0, StatusCode::UNAUTHORIZED);
    let response = app.client.get(app.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}
