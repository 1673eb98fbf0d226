//! Everything the platform logs during the sensitive flows, captured at TRACE level and
//! searched for the secrets those flows handle: none may appear.

use chrono::TimeDelta;
use platform_tests::spawn_app;
use reqwest::StatusCode;
use serde_json::json;
use shared::domain::totp;

#[tokio::test]
async fn logs_never_contain_passwords_tokens_codes_or_secrets() {
    let captured = platform_tests::Captured::everything();

    let app = spawn_app().await;
    let email = "secretive.investor@example.sg";
    let password = "correct horse battery staple";
    let mut secrets: Vec<String> = vec![password.into(), email.into()];

    // Sign-up, a wrong code, the right code.
    let (status, _) = app.post("/v1/auth/signup", json!({"email": email, "password": password})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let text = app.mail().last().unwrap().text.clone();
    let code = text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).unwrap().to_owned();
    app.post("/v1/auth/email/verify", json!({"email": email, "code": "999999", "password": password})).await;
    app.post("/v1/auth/email/verify", json!({"email": email, "code": code, "password": password})).await;
    secrets.push(code);

    // A wrong password, then a login, a refresh, reuse of the spent token.
    app.post("/v1/auth/login", json!({"email": email, "password": "a wrong password 1"})).await;
    secrets.push("a wrong password 1".into());
    let tokens = app.login(email, password).await;
    let (_, rotated) = app.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    app.clock.advance(TimeDelta::seconds(10));
    app.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    for t in [&tokens, &rotated] {
        secrets.push(t["access_token"].as_str().unwrap().into());
        secrets.push(t["refresh_token"].as_str().unwrap().into());
    }

    // TOTP enrolment and a two-step login.
    let fresh = app.login(email, password).await;
    let access = fresh["access_token"].as_str().unwrap().to_owned();
    let response = app.client.post(app.url("/v1/auth/mfa/totp")).bearer_auth(&access).send().await.unwrap();
    let enrollment: serde_json::Value = response.json().await.unwrap();
    let secret_text = enrollment["secret"].as_str().unwrap().to_owned();
    let secret = totp::from_base32(&secret_text).unwrap();
    let now = app.platform.clock.now().timestamp();
    let first = format!("{:06}", totp::code_for_step(&secret, totp::step_at(now)));
    app.post_as("/v1/auth/mfa/totp/confirm", &access, Some(json!({"code": first}))).await;
    app.clock.advance(TimeDelta::seconds(30));
    let (_, challenge) = app.post("/v1/auth/login", json!({"email": email, "password": password})).await;
    let second = format!("{:06}", totp::code_for_step(&secret, totp::step_at(now + 30)));
    let (status, mfa_tokens) =
        app.post("/v1/auth/login/mfa", json!({"challenge": challenge["challenge"], "code": second})).await;
    assert_eq!(status, StatusCode::OK);
    secrets.extend([secret_text, first, second, challenge["challenge"].as_str().unwrap().into(), access]);
    secrets.push(mfa_tokens["access_token"].as_str().unwrap().into());

    // A password change.
    let change = json!({"current_password": password, "new_password": "a brand new passphrase"});
    let mfa_access = mfa_tokens["access_token"].as_str().unwrap();
    assert_eq!(app.post_as("/v1/auth/password", mfa_access, Some(change)).await, StatusCode::NO_CONTENT);
    secrets.push("a brand new passphrase".into());

    let logs = captured.text();
    assert!(logs.contains("answered"), "the capture works: request logs are there");
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "the logs contain a secret ({} characters)", secret.len());
    }
}
