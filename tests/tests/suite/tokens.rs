//! Access tokens that must be refused, each next to a control token built the same way
//! that must be accepted, so every refusal is for the one thing changed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use platform_tests::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::app::sessions::{ACCESS_TYP, AUDIENCE, AccessClaims, ISSUER};
use shared::app::signing_keys::TokenKeys;
use shared::ports::Clock;

struct Forge {
    app: TestApp,
    keys: TokenKeys,
    claims: AccessClaims,
    tokens: Value,
}

async fn forge() -> Forge {
    let app = spawn_app().await;
    let tokens = app.logged_in("investor@example.sg", "correct horse battery staple").await;
    let (_, me) = app.get_as("/v1/me", tokens["access_token"].as_str().unwrap()).await;
    let p = &app.platform;
    let keys =
        TokenKeys::load(p.store.as_ref(), p.token_keyring.as_ref(), p.clock.as_ref(), p.ids.as_ref()).await.unwrap();
    let now = p.clock.now().timestamp();
    let claims = AccessClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: me["user_id"].as_str().unwrap().into(),
        sid: me["session_id"].as_str().unwrap().into(),
        roles: vec![],
        lvl: 1,
        org: None,
        mfa: None,
        auth_time: Some(now),
        iat: now,
        exp: now + 600,
        jti: "at_forged".into(),
    };
    Forge { app, keys, claims, tokens }
}

impl Forge {
    async fn status(&self, token: &str) -> StatusCode {
        self.app.get_as("/v1/me", token).await.0
    }

    fn signed(&self, claims: &AccessClaims) -> String {
        self.keys.sign_typed(claims, ACCESS_TYP).unwrap()
    }

    /// The forge's claims issued now, signed with the forge's key.
    fn fresh(&self) -> String {
        let now = self.app.clock.now().timestamp();
        self.signed(&AccessClaims { iat: now, exp: now + 600, ..self.claims.clone() })
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn the_control_token_is_accepted() {
    let f = forge().await;
    assert_eq!(f.status(&f.signed(&f.claims)).await, StatusCode::OK);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let f = forge().await;
    let kid = f.keys.current().kid.clone();
    let token = format!("{}.{}.", b64(&json!({"alg": "none", "typ": ACCESS_TYP, "kid": kid})), b64(&json!(f.claims)));
    assert_eq!(f.status(&token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let f = forge().await;
    let (_, jwks) = f.app.get_as("/.well-known/jwks.json", "").await;
    let jwk = jwks["keys"][0].clone();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some(ACCESS_TYP.into());
    header.kid = jwk["kid"].as_str().map(String::from);
    let secret = jwk.to_string();
    let token =
        jsonwebtoken::encode(&header, &f.claims, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())).unwrap();
    assert_eq!(f.status(&token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_issuer_audience_or_type_is_refused() {
    let f = forge().await;
    let wrong_issuer = AccessClaims { iss: "someone-else".into(), ..f.claims.clone() };
    let wrong_audience = AccessClaims { aud: "other-api".into(), ..f.claims.clone() };
    for claims in [wrong_issuer, wrong_audience] {
        assert_eq!(f.status(&f.signed(&claims)).await, StatusCode::UNAUTHORIZED);
    }
    let plain_jwt = f.keys.sign(&f.claims).unwrap();
    assert_eq!(f.status(&plain_jwt).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_expired_beyond_the_leeway_is_refused() {
    let f = forge().await;
    let now = f.app.platform.clock.now().timestamp();
    let within = AccessClaims { exp: now - 29, ..f.claims.clone() };
    assert_eq!(f.status(&f.signed(&within)).await, StatusCode::OK);
    let beyond = AccessClaims { exp: now - 31, ..f.claims.clone() };
    assert_eq!(f.status(&f.signed(&beyond)).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let f = forge().await;
    let token = f.signed(&f.claims);
    let parts: Vec<&str> = token.split('.').collect();
    let raised = AccessClaims { roles: vec!["super-admin".into()], ..f.claims.clone() };
    let tampered = format!("{}.{}.{}", parts[0], b64(&json!(raised)), parts[2]);
    assert_eq!(f.status(&tampered).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let f = forge().await;
    let token = f.signed(&f.claims);
    let parts: Vec<&str> = token.split('.').collect();
    let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    header["kid"] = json!("key_unknown");
    let token = format!("{}.{}.{}", b64(&header), parts[1], parts[2]);
    assert_eq!(f.status(&token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_refresh_token_is_not_an_access_token() {
    let f = forge().await;
    assert_eq!(f.status(f.tokens["refresh_token"].as_str().unwrap()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(f.status("").await, StatusCode::UNAUTHORIZED);
    assert_eq!(f.status("not.a.token").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_forged_refresh_token_is_refused_without_revoking_the_session() {
    let f = forge().await;
    let genuine = f.tokens["refresh_token"].as_str().unwrap();
    let (body, _) = genuine.rsplit_once('.').unwrap();
    let forged = format!("{body}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
    let (status, _) = f.app.post("/v1/auth/refresh", json!({"refresh_token": forged})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Only a genuine spent token counts as reuse: the real one still rotates.
    let (status, _) = f.app.post("/v1/auth/refresh", json!({"refresh_token": genuine})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_process_that_loaded_the_keys_before_a_rotation_verifies_tokens_signed_after_it() {
    use shared::domain::session::SessionPolicy;
    let f = forge().await;
    let p = &f.app.platform;
    // Instance A read the public keys; then B rotated them and signs with the new key.
    let a = p.token_verifier(SessionPolicy::default());
    assert!(a.authenticate(&f.signed(&f.claims)).await.is_ok());
    let rotated = TokenKeys::rotate(
        p.store.as_ref(),
        p.token_keyring.as_ref(),
        p.clock.as_ref(),
        p.ids.as_ref(),
        chrono::TimeDelta::minutes(20),
    )
    .await
    .unwrap();
    assert_ne!(rotated.current().kid, f.keys.current().kid);
    let token = rotated.sign_typed(&f.claims, ACCESS_TYP).unwrap();
    let principal = a.authenticate(&token).await.expect("A reloads the key set on an unknown kid");
    assert_eq!(principal.user_id, f.claims.sub);
    // Tokens signed before the rotation still verify during the overlap.
    assert!(a.authenticate(&f.signed(&f.claims)).await.is_ok());
}

#[tokio::test]
async fn a_signing_key_older_than_thirty_days_is_replaced_at_load_and_the_old_one_stays_published() {
    use shared::domain::session::SessionPolicy;
    let f = forge().await;
    let p = &f.app.platform;
    let load = || p.sessions(SessionPolicy::default());
    let old_kid = f.keys.current().kid.clone();
    assert_eq!(load().await.unwrap().keys().current().kid, old_kid, "a young key is kept");

    f.app.clock.advance(chrono::TimeDelta::days(30));
    let (first, second) = tokio::join!(load(), load());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(first.keys().current().kid, old_kid);
    assert_eq!(first.keys().current().kid, second.keys().current().kid, "two processes rotate once");
    let now = f.app.clock.now();
    let published = first.keys().public().jwks(now, SessionPolicy::default().key_overlap());
    let kids: Vec<String> =
        published["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&old_kid), "the replaced key stays published for the overlap");
}

/// Retires the key the forge signs with, as a rotation by the auth function does.
async fn retire_the_forge_key(f: &Forge) {
    let p = &f.app.platform;
    let overlap = shared::domain::session::SessionPolicy::default().key_overlap();
    TokenKeys::rotate(p.store.as_ref(), p.token_keyring.as_ref(), p.clock.as_ref(), p.ids.as_ref(), overlap)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retired_key_verifies_until_its_overlap_window_ends_in_every_function() {
    let f = forge().await;
    retire_the_forge_key(&f).await;
    let overlap = shared::domain::session::SessionPolicy::default().key_overlap();
    f.app.clock.advance(overlap - chrono::TimeDelta::minutes(1));
    // The auth function and the offering function each verify with their own copy.
    let token = f.fresh();
    assert_eq!(f.app.get_as("/v1/me", &token).await.0, StatusCode::OK);
    assert_eq!(f.app.get_as("/v1/me/subscriptions", &token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_retired_key_stops_verifying_when_its_overlap_window_ends_in_every_function() {
    let f = forge().await;
    // GIVEN both functions verified a token of the current key (their copies of the set
    // say it is not retired)
    let before = f.fresh();
    assert_eq!(f.app.get_as("/v1/me", &before).await.0, StatusCode::OK);
    assert_eq!(f.app.get_as("/v1/me/subscriptions", &before).await.0, StatusCode::OK);
    // WHEN the key is retired and its window has passed
    retire_the_forge_key(&f).await;
    let overlap = shared::domain::session::SessionPolicy::default().key_overlap();
    f.app.clock.advance(overlap + chrono::TimeDelta::seconds(1));
    // THEN neither function accepts what it signs, however fresh the claims
    let late = f.fresh();
    assert_eq!(f.app.get_as("/v1/me", &late).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(f.app.get_as("/v1/me/subscriptions", &late).await.0, StatusCode::UNAUTHORIZED);
    let (_, jwks) = f.app.get_as("/.well-known/jwks.json", "").await;
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(!kids.contains(&f.keys.current().kid.as_str()), "the retired key is no longer published");
}

/// An auth process that unsealed its key before another process rotated would otherwise
/// go on signing with a key every verifier refuses once its overlap window ends.
#[tokio::test]
async fn an_auth_process_signs_with_the_key_another_process_rotated_to_within_a_minute() {
    use shared::domain::session::SessionPolicy;
    let f = forge().await;
    let p = &f.app.platform;
    let accounts = p.accounts();
    let user = accounts.create_verified("rotation@example.sg", "a long enough passphrase 2026", &[], 1).await.unwrap();
    let a = p.sessions(SessionPolicy::default()).await.unwrap();
    let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    // GIVEN another process rotated the keys
    let rotated = TokenKeys::rotate(
        p.store.as_ref(),
        p.token_keyring.as_ref(),
        p.clock.as_ref(),
        p.ids.as_ref(),
        SessionPolicy::default().key_overlap(),
    )
    .await
    .unwrap();
    // WHEN this one signs within the minute, THEN with the key it has (still trusted)
    assert_eq!(kid(&a.start(&user).await.unwrap().access_token), f.keys.current().kid);
    // AND after the minute, with the new key
    f.app.clock.advance(chrono::TimeDelta::seconds(61));
    let tokens = a.start(&user).await.unwrap();
    assert_eq!(kid(&tokens.access_token), rotated.current().kid);
    assert_eq!(f.app.get_as("/v1/me", &tokens.access_token).await.0, StatusCode::OK);
}

/// After a suspected leak a super-admin rotates at once: every access token the old keys
/// signed is refused (by auth at once, by every function within a minute), every refresh
/// token too, and the rotation is audited. A routine rotation keeps old tokens valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_rotation_refuses_what_the_old_keys_signed_and_is_audited() {
    let app = spawn_app().await;
    let password = "correct horse battery staple";
    let investor = app.logged_in("investor@example.sg", password).await;
    let access = investor["access_token"].as_str().unwrap();
    let (_, admin) = app.operator("admin@example.sg", &["super-admin"]).await;
    let (_, finance) = app.operator("finance@example.sg", &["finance"]).await;
    let rotate = |token: &str, body: Value| {
        let request = app.client.post(app.url("/v1/admin/keys/rotate")).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(rotate(&finance, json!({"reason": "drill"})).await.0, StatusCode::FORBIDDEN);
    let (status, problem) = rotate(&admin, json!({"reason": " "})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")));

    let (status, routine) = rotate(&admin, json!({"reason": "scheduled drill"})).await;
    assert_eq!((status, routine["retired_now"].as_bool()), (StatusCode::OK, Some(false)), "{routine}");
    assert_eq!(app.get_as("/v1/me", access).await.0, StatusCode::OK, "a routine rotation keeps the overlap");

    let body = json!({"retire_now": true, "rotate_refresh_secret": true, "reason": "signing key leaked"});
    let (status, rotated) = rotate(&admin, body).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert!(!rotated["retired"].as_array().unwrap().is_empty(), "{rotated}");
    assert_eq!(app.get_as("/v1/me", access).await.0, StatusCode::UNAUTHORIZED, "auth refuses at once");
    assert_eq!(app.get_as("/v1/me", &admin).await.0, StatusCode::UNAUTHORIZED, "the admin's own token too");
    app.clock.advance(chrono::TimeDelta::seconds(61));
    assert_eq!(app.get_as("/v1/me/subscriptions", access).await.0, StatusCode::UNAUTHORIZED, "so does offering");
    let (status, _) = app.post("/v1/auth/refresh", json!({"refresh_token": investor["refresh_token"]})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the refresh secret was replaced");
    let fresh = app.login("investor@example.sg", password).await;
    assert_eq!(app.get_as("/v1/me", fresh["access_token"].as_str().unwrap()).await.0, StatusCode::OK);

    let log = shared::app::audit::AuditLog::new(app.platform.store.clone(), app.platform.clock.clone());
    let (entries, _) = log.page(10, None).await.unwrap();
    let rotation = entries.iter().find(|e| e.action == "keys.rotate" && e.reason == "signing key leaked").unwrap();
    assert!(rotation.decision.contains("at once") && rotation.decision.contains("refresh secret"), "{rotation:?}");
}
