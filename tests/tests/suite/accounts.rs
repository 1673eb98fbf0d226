//! Sign-up and email verification through the HTTP API of the local platform.

use chrono::TimeDelta;
use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::ports::store::{Key, Query};

on_both_stores!(
    a_new_account_is_verified_with_the_emailed_code,
    a_malformed_body_is_a_400_problem_and_changes_nothing,
    bad_input_names_the_field_and_creates_nothing,
    signing_up_again_answers_the_same_and_never_makes_a_second_account,
    a_code_dies_after_five_wrong_tries_and_after_fifteen_minutes,
    an_unknown_address_gets_the_same_answer_as_a_wrong_code,
    whoever_signed_the_address_up_first_cannot_log_in_after_its_owner_verifies,
    parallel_wrong_codes_all_count_and_get_at_most_five_checks,
    no_item_key_holds_an_address_and_the_user_item_holds_it_sealed,
);

const EMAIL: &str = "Tan.Wei@Example.SG";
const PASSWORD: &str = "correct horse battery staple";

fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a six-digit code").to_owned()
}

async fn sign_up(app: &TestApp) -> String {
    let (status, body) = app.post("/v1/auth/signup", json!({"email": EMAIL, "password": PASSWORD})).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"status": "verification_sent"})));
    let mail = app.mail();
    let last = mail.last().expect("a verification email");
    assert_eq!((last.to.as_str(), last.subject.as_str()), ("tan.wei@example.sg", "Your verification code"));
    code_in(&last.text)
}

/// Where the owner of `address` is found: under its blind index.
async fn owner_partition(app: &TestApp, address: &str) -> String {
    format!("EMAIL#{}", app.platform.accounts().blind(address).await.unwrap())
}

async fn verified(app: &TestApp) -> bool {
    let owner = app.platform.store.get(&Key::new(owner_partition(app, EMAIL).await, "USER")).await.unwrap().unwrap();
    let user_id = owner.decode::<Value>().unwrap()["user_id"].as_str().unwrap().to_owned();
    let user = app.platform.store.get(&Key::new(format!("USER#{user_id}"), "PROFILE")).await.unwrap().unwrap();
    let user: Value = user.decode().unwrap();
    assert!(user["password_hash"].as_str().unwrap().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    user["email_verified"].as_bool().unwrap()
}

/// A field that breaks the schema: 400 naming it.
fn assert_field(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["type"], "/problems/validation");
    assert_eq!(body["errors"][0]["field"], field, "{body}");
}

/// A field that meets the schema and a rule refuses (a wrong code, a weak password): 422
/// naming it.
fn assert_refused(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["type"], "/problems/refused");
    assert_eq!(body["errors"][0]["field"], field, "{body}");
}

async fn a_new_account_is_verified_with_the_emailed_code(app: TestApp) {
    let code = sign_up(&app).await;
    assert!(!verified(&app).await);
    let (status, body) = app
        .post("/v1/auth/email/verify", json!({"email": "tan.wei@example.sg", "code": code, "password": PASSWORD}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "verified"})));
    assert!(verified(&app).await);
    // The code is spent.
    let (status, body) =
        app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": code, "password": PASSWORD})).await;
    assert_refused(status, &body, "code");
}

async fn a_malformed_body_is_a_400_problem_and_changes_nothing(app: TestApp) {
    let response = app
        .client
        .post(app.url("/v1/auth/signup"))
        .header("content-type", "application/json")
        .body("{\"email\": \"a@b.sg\", \"password\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "/problems/malformed-request");
    assert!(app.mail().is_empty());
    let owner = owner_partition(&app, "a@b.sg").await;
    assert!(app.platform.store.query(&Query::partition(owner)).await.unwrap().items.is_empty());
}

async fn bad_input_names_the_field_and_creates_nothing(app: TestApp) {
    let (status, body) = app.post("/v1/auth/signup", json!({"email": "not-an-address", "password": PASSWORD})).await;
    assert_field(status, &body, "email");
    let (status, body) = app.post("/v1/auth/signup", json!({"email": EMAIL, "password": "short"})).await;
    assert_field(status, &body, "password");
    let (status, body) = app.post("/v1/auth/signup", json!({"email": EMAIL, "password": "Password1234!"})).await;
    assert_refused(status, &body, "password");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("breached"));
    let (status, body) = app.post("/v1/auth/signup", json!({"email": EMAIL})).await;
    assert_field(status, &body, "password");
    let (status, body) =
        app.post("/v1/auth/signup", json!({"email": EMAIL, "password": PASSWORD, "role": "admin"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(app.mail().is_empty());
}

async fn signing_up_again_answers_the_same_and_never_makes_a_second_account(app: TestApp) {
    let first = sign_up(&app).await;
    // Not yet verified: a fresh code replaces the first.
    let second = sign_up(&app).await;
    let (status, body) =
        app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": second, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    if first != second {
        let (status, _) =
            app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": first, "password": PASSWORD})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Verified: the same answer, and a notice to the owner instead of a code.
    let (status, body) =
        app.post("/v1/auth/signup", json!({"email": EMAIL, "password": "another fine passphrase"})).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"status": "verification_sent"})));
    assert_eq!(app.mail().last().unwrap().subject, "Someone tried to sign up with your address");
    let users = app.platform.store.query(&Query::partition(owner_partition(&app, EMAIL).await)).await.unwrap();
    assert_eq!(users.items.len(), 1);
}

async fn a_code_dies_after_five_wrong_tries_and_after_fifteen_minutes(app: TestApp) {
    let code = sign_up(&app).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (status, body) =
            app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": wrong, "password": PASSWORD})).await;
        assert_refused(status, &body, "code");
    }
    // The fifth wrong code locked the address's verifications for a minute.
    let (status, body) =
        app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": code, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    app.clock.advance(TimeDelta::minutes(1));
    // And the code itself died.
    let (status, body) =
        app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": code, "password": PASSWORD})).await;
    assert_refused(status, &body, "code");
    assert!(!verified(&app).await);

    let code = sign_up(&app).await;
    app.clock.advance(TimeDelta::minutes(15) + TimeDelta::seconds(1));
    let (status, body) =
        app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": code, "password": PASSWORD})).await;
    assert_refused(status, &body, "code");
    assert!(!verified(&app).await);
}

async fn an_unknown_address_gets_the_same_answer_as_a_wrong_code(app: TestApp) {
    let (status, body) = app
        .post("/v1/auth/email/verify", json!({"email": "nobody@example.sg", "code": "123456", "password": PASSWORD}))
        .await;
    assert_refused(status, &body, "code");
}

/// Pre-account takeover: an attacker registers the victim's address first with a password
/// of their own. The owner verifies with the mailed code and the password given with it:
/// the attacker's password opens nothing.
async fn whoever_signed_the_address_up_first_cannot_log_in_after_its_owner_verifies(app: TestApp) {
    let attacker = "the attacker chose this";
    let (status, _) = app.post("/v1/auth/signup", json!({"email": EMAIL, "password": attacker})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let code = sign_up(&app).await;
    let short = app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": code, "password": "password"})).await;
    assert_field(short.0, &short.1, "password");
    let weak = json!({"email": EMAIL, "code": code, "password": "password12345"});
    let weak = app.post("/v1/auth/email/verify", weak).await;
    assert_refused(weak.0, &weak.1, "password");
    assert!(!verified(&app).await, "a refused password changes nothing");
    let (status, body) =
        app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": code, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.post("/v1/auth/login", json!({"email": EMAIL, "password": attacker})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.login(EMAIL, PASSWORD).await;
}

/// Every verification is reserved before its code is checked: twenty wrong codes at once
/// get no more than the address's five checks, the rest 429, and the code is dead after.
async fn parallel_wrong_codes_all_count_and_get_at_most_five_checks(app: TestApp) {
    let code = sign_up(&app).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url) = (app.client.clone(), app.url("/v1/auth/email/verify"));
        let body = json!({"email": EMAIL, "code": wrong, "password": PASSWORD});
        guesses.spawn(async move { client.post(url).json(&body).send().await.unwrap().status() });
    }
    let answers = guesses.join_all().await;
    let checked = answers.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count();
    let refused = answers.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 15), "{answers:?}");
    app.clock.advance(TimeDelta::minutes(1));
    let (status, body) =
        app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": code, "password": PASSWORD})).await;
    assert_refused(status, &body, "code");
    assert!(!verified(&app).await, "five wrong codes counted: the code is dead");
}

/// A copy of the table alone does not tell whether an address is registered, nor whose it
/// is: the owner item's key is a keyed blind index (the same for any spelling of the
/// address), the throttles' keys too, and the user item holds the address sealed.
async fn no_item_key_holds_an_address_and_the_user_item_holds_it_sealed(app: TestApp) {
    let code = sign_up(&app).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, _) =
        app.post("/v1/auth/email/verify", json!({"email": EMAIL, "code": wrong, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.post("/v1/auth/login", json!({"email": EMAIL, "password": "not the password"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong password, counted against the account");
    let store = &app.platform.store;
    for plain in ["tan.wei@example.sg", "Tan.Wei@Example.SG"] {
        assert!(store.get(&Key::new(format!("EMAIL#{plain}"), "USER")).await.unwrap().is_none());
        for scope in ["signup", "verify", "account"] {
            let key = Key::new(format!("THROTTLE#{scope}:{plain}"), "FAILURES");
            assert!(store.get(&key).await.unwrap().is_none(), "{scope}");
        }
    }
    let accounts = app.platform.accounts();
    let blind = accounts.blind(EMAIL).await.unwrap();
    assert_eq!(blind, accounts.blind(" tan.wei@example.sg ").await.unwrap(), "one index for every spelling");
    assert_eq!(blind.len(), 64);
    for scope in ["signup", "verify", "account"] {
        let key = Key::new(format!("THROTTLE#{scope}:{blind}"), "FAILURES");
        assert!(store.get(&key).await.unwrap().is_some(), "the {scope} throttle counts under the blind index");
    }

    let owner = store.get(&Key::new(format!("EMAIL#{blind}"), "USER")).await.unwrap().expect("found by the index");
    let user_id = owner.decode::<Value>().unwrap()["user_id"].as_str().unwrap().to_owned();
    let item = store.get(&Key::new(format!("USER#{user_id}"), "PROFILE")).await.unwrap().unwrap();
    let body = String::from_utf8(item.body.clone()).unwrap().to_lowercase();
    assert!(!body.contains("tan.wei") && !body.contains("example.sg"), "the address is sealed: {body}");
    let user: shared::app::accounts::User = item.decode().unwrap();
    assert_eq!(accounts.email_of(&user).await.unwrap().as_str(), "tan.wei@example.sg");
}
