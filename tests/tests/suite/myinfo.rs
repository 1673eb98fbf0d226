//! Myinfo onboarding end to end against the Singpass simulator, on both stores: the whole
//! flow to level 3 and back, each persona's assessment, the manual review, break-glass
//! and erasure, the re-wrap after a key rotation, and every check failing on its own.

use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_stores!(
    an_investor_onboards_opts_in_sees_offers_and_opts_out,
    each_persona_is_assessed_and_one_who_meets_no_test_goes_to_manual_review,
    personal_data_is_read_only_by_break_glass_and_erasure_shreds_it,
    a_key_rotation_is_followed_by_a_rewrap_that_keeps_every_record_readable,
    every_failed_check_stops_the_flow_and_stores_nothing,
    singpass_refuses_dpop_proofs_with_the_wrong_method_or_key,
);

/// Where the embedded platform says it is; the test's app listens elsewhere.
const EMBEDDED: &str = "http://127.0.0.1:3000";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Starts onboarding; answers the Singpass authorize URL on the test's app.
async fn start(app: &TestApp, token: &str, declaration: Value) -> String {
    let (status, started) =
        app.post_json_as("/v1/myinfo/authorize", token, json!({ "declaration": declaration })).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    started["authorize_url"].as_str().unwrap().replace(EMBEDDED, &app.base)
}

/// The investor logs in at Singpass as `persona`; answers the callback URL Singpass
/// redirects to.
async fn log_in_at_singpass(app: &TestApp, authorize_url: &str, persona: &str) -> String {
    let response = no_redirects().get(format!("{authorize_url}&persona={persona}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND, "{}", response.text().await.unwrap());
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    location.replace(EMBEDDED, &app.base)
}

async fn get(url: &str) -> (StatusCode, Value) {
    let response = reqwest::get(url).await.unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

/// The whole flow as `persona` with `declaration`; answers the callback's answer.
async fn onboard(app: &TestApp, token: &str, persona: &str, declaration: Value) -> (StatusCode, Value) {
    let authorize_url = start(app, token, declaration).await;
    let callback = log_in_at_singpass(app, &authorize_url, persona).await;
    get(&callback).await
}

async fn fault(app: &TestApp, kind: &str) {
    let response =
        app.client.post(app.url("/sim/singpass/faults")).json(&json!({ "kind": kind })).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// A level-2 investor (second factor enrolled) and their token answer.
async fn investor(app: &TestApp, email: &str) -> (String, Value) {
    app.user_tokens(email, &[], 2).await
}

async fn refreshed(app: &TestApp, tokens: &Value) -> Value {
    let (status, fresh) = app.post("/v1/auth/refresh", json!({ "refresh_token": tokens["refresh_token"] })).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    fresh
}

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

async fn an_investor_onboards_opts_in_sees_offers_and_opts_out(app: TestApp) {
    let deal = app.open_deal("201912345K").await;
    let (user_id, tokens) = investor(&app, "tan@example.sg").await;
    let token = access(&tokens);

    // No offer terms to the public, nor to an investor below level 3.
    let anonymous = reqwest::get(app.url("/v1/deals")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body = anonymous.text().await.unwrap();
    assert!(!body.contains("unit_price") && !body.contains(&deal), "{body}");
    assert_eq!(reqwest::get(app.url(&format!("/v1/deals/{deal}"))).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_as("/v1/deals", &token).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get_as(&format!("/v1/deals/{deal}"), &token).await.0, StatusCode::FORBIDDEN);

    let (status, assessed) = onboard(&app, &token, "S9812381D", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{assessed}");
    assert_eq!(assessed["outcome"], "passed");
    assert_eq!(assessed["met"], json!(["income"]));
    assert_eq!(assessed["nric_masked"], "S****381D");

    // Passed, but not yet opted in: still level 2.
    let (_, status_view) = app.get_as("/v1/me/accreditation", &token).await;
    assert_eq!((status_view["level"].as_u64(), status_view["opted_in"].is_null()), (Some(2), true), "{status_view}");
    let version = status_view["notice"]["version"].as_str().unwrap().to_owned();
    assert!(status_view["notice"]["text"].as_str().unwrap().contains("accredited investor"));
    let (status, _) =
        app.post_json_as("/v1/me/accreditation/opt-in", &token, json!({"notice_version": "2020-01-01"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "an outdated notice is refused");
    let (status, opted) =
        app.post_json_as("/v1/me/accreditation/opt-in", &token, json!({"notice_version": version})).await;
    assert_eq!(status, StatusCode::OK, "{opted}");
    assert_eq!(opted["level"], 3);
    assert_eq!(opted["opted_in"]["notice_version"], version.as_str());

    // A fresh token carries level 3; offers are shown.
    let tokens = refreshed(&app, &tokens).await;
    let token = access(&tokens);
    let (_, me) = app.get_as("/v1/me", &token).await;
    assert_eq!(me["level"], 3, "{me}");
    let (status, deals) = app.get_as("/v1/deals", &token).await;
    assert_eq!(status, StatusCode::OK, "{deals}");
    assert_eq!(deals["items"][0]["id"], deal.as_str());
    assert_eq!(deals["items"][0]["unit_price"], "100.00");

    // The transaction log: every exchange, personal parts sealed.
    let stored = app.platform.onboarding().log_of(&user_id, 50).await.unwrap();
    let steps: Vec<&str> = stored.iter().rev().map(|e| e.step.as_str()).collect();
    assert_eq!(steps.first(), Some(&"par"), "{steps:?}");
    assert!(steps.contains(&"token") && steps.last() == Some(&"userinfo"), "{steps:?}");
    // The first token request meets the server's DPoP nonce and is retried with it.
    assert!(stored.iter().any(|e| e.step == "token" && e.outcome == "use_dpop_nonce"), "{stored:?}");
    assert!(stored.iter().filter(|e| e.step == "userinfo").all(|e| e.personal.is_some() || e.outcome != "ok"));
    let text = serde_json::to_string(&stored).unwrap();
    assert!(!text.contains("S9812381D") && !text.contains("TAN AH KOW") && !text.contains("350000"), "{text}");

    // Opting out withdraws level 3 at once, for the token already held too.
    let (status, out) = app.post_json_as("/v1/me/accreditation/opt-out", &token, json!({})).await;
    assert_eq!((status, out["level"].as_u64()), (StatusCode::OK, Some(2)), "{out}");
    assert_eq!(app.get_as("/v1/deals", &token).await.0, StatusCode::FORBIDDEN);
    let (status, refused) = app.subscribe(&token, &deal, "after-opt-out", 10).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
}

async fn each_persona_is_assessed_and_one_who_meets_no_test_goes_to_manual_review(app: TestApp) {
    // (persona, declaration, outcome, criteria met)
    let cases = [
        ("S9812382B", json!({"financial_assets": "800000.00"}), "passed", json!(["net_financial_assets"])),
        (
            "S9812383Z",
            json!({"residence_value": "2500000.00", "other_assets": "1000000.01"}),
            "passed",
            json!(["net_personal_assets"]),
        ),
        // Without Myinfo's property record the same residence would not count: this
        // persona owns none, so only 1,000,000.01 of others plus CPF remain.
        ("S9812384G", json!({"residence_value": "2500000.00", "other_assets": "1000000.01"}), "not_met", json!([])),
        ("T0112345C", json!(null), "not_met", json!([])),
    ];
    for (i, (persona, declaration, outcome, met)) in cases.into_iter().enumerate() {
        let (_, tokens) = investor(&app, &format!("persona{i}@example.sg")).await;
        let (status, assessed) = onboard(&app, &access(&tokens), persona, declaration).await;
        assert_eq!(status, StatusCode::OK, "{persona}: {assessed}");
        assert_eq!((assessed["outcome"].as_str(), &assessed["met"]), (Some(outcome), &met), "{persona}");
    }

    // Siti meets no test: opting in proposes the manual review, with the assessment.
    let (siti, tokens) = investor(&app, "siti@example.sg").await;
    let token = access(&tokens);
    let (_, assessed) = onboard(&app, &token, "S9812384G", json!(null)).await;
    assert_eq!(assessed["outcome"], "not_met");
    let (status, opted) = app
        .post_json_as("/v1/me/accreditation/opt-in", &token, json!({"notice_version": assessed["notice_version"]}))
        .await;
    assert_eq!((status, opted["level"].as_u64()), (StatusCode::OK, Some(2)), "{opted}");
    let review = opted["review"].as_str().unwrap().to_owned();
    let (_, checker) = app.operator("checker@example.sg", &["co-operator"]).await;
    let (status, requests) = app.get_as("/v1/admin/change-requests", &checker).await;
    assert_eq!(status, StatusCode::OK);
    let request = requests["items"].as_array().unwrap().iter().find(|r| r["id"] == review.as_str()).unwrap().clone();
    assert_eq!(request["change"]["user_id"], siti.as_str());
    assert_eq!(request["change"]["myinfo"]["outcome"], "not_met");
    assert_eq!(request["change"]["myinfo"]["nric_masked"], "S****384G");
    let (status, approved) =
        app.post_json_as(&format!("/v1/admin/change-requests/{review}/approve"), &checker, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    let (_, view) = app.get_as("/v1/me/accreditation", &token).await;
    assert_eq!(view["level"], 3, "{view}");
}

async fn personal_data_is_read_only_by_break_glass_and_erasure_shreds_it(app: TestApp) {
    let (user_id, tokens) = investor(&app, "raj@example.sg").await;
    let declaration = json!({"residence_value": "2500000.00", "other_assets": "1200000.00"});
    let (status, _) = onboard(&app, &access(&tokens), "S9812383Z", declaration).await;
    assert_eq!(status, StatusCode::OK);
    let reveal = format!("/v1/admin/users/{user_id}/myinfo/reveal");
    let reason = json!({"reason": "complaint 2026-118: the investor disputes the assessment"});

    // Member management may read the log's outcomes, not the data.
    let (_, manager) = app.operator("manager@example.sg", &["member-management"]).await;
    assert_eq!(app.post_json_as(&reveal, &manager, reason.clone()).await.0, StatusCode::FORBIDDEN);
    let (status, log) = app.get_as(&format!("/v1/admin/users/{user_id}/myinfo/log"), &manager).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!log.to_string().contains("S9812383Z"), "{log}");

    let (_, guardian) = app.operator("dpo@example.sg", &["data-protection"]).await;
    let (status, refused) = app.post_json_as(&reveal, &guardian, json!({"reason": "x"})).await;
    assert_eq!((status, refused["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")));
    let (status, _) = app.post_json_as(&reveal, &guardian, json!({"reason": "            "})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, data) = app.post_json_as(&reveal, &guardian, reason.clone()).await;
    assert_eq!(status, StatusCode::OK, "{data}");
    assert_eq!(data["person"]["uinfin"]["value"], "S9812383Z");
    assert_eq!(data["inputs"]["declared"]["residence_value"], 250_000_000);
    assert_eq!(data["assessment"]["residence_counted"], 100_000_000);

    // Both attempts are in the audit log, with the reason.
    let (_, auditor) = app.operator("auditor@example.sg", &["co-operator"]).await;
    let (_, audit) = app.get_as("/v1/admin/audit?limit=200", &auditor).await;
    let reveals: Vec<&Value> =
        audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "myinfo.reveal").collect();
    assert_eq!(reveals.len(), 2, "{audit}");
    assert!(reveals.iter().any(|e| e["decision"] == "denied"));
    assert!(reveals.iter().any(|e| e["decision"] == "allowed" && e["reason"].as_str().unwrap().contains("complaint")));

    // Erasure: the key is gone, and with it the data.
    let (status, erased) =
        app.post_json_as(&format!("/v1/admin/users/{user_id}/myinfo/erase"), &guardian, reason.clone()).await;
    assert_eq!((status, erased["erased"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(app.post_json_as(&reveal, &guardian, reason).await.0, StatusCode::NOT_FOUND);
    let entries = app.platform.onboarding().log_of(&user_id, 50).await.unwrap();
    let vault = shared::app::myinfo::vault::Vault {
        store: app.platform.store.clone(),
        keyring: app.platform.keyring.clone(),
        clock: app.platform.clock.clone(),
    };
    let sealed = entries.iter().find_map(|e| e.personal.clone().map(|p| (e.id.clone(), p))).unwrap();
    assert!(matches!(
        vault.open(&user_id, &sealed.0, &sealed.1).await,
        Err(shared::app::myinfo::vault::VaultError::Erased)
    ));
}

async fn a_key_rotation_is_followed_by_a_rewrap_that_keeps_every_record_readable(app: TestApp) {
    let mut people = Vec::new();
    for (i, persona) in ["S9812381D", "S9812382B", "S9812384G"].iter().enumerate() {
        let (user_id, tokens) = investor(&app, &format!("rewrap{i}@example.sg")).await;
        let (status, _) = onboard(&app, &access(&tokens), persona, json!(null)).await;
        assert_eq!(status, StatusCode::OK);
        people.push(user_id);
    }
    // The platform's keys towards Singpass rotate with an overlap: both published.
    let (_, before) = get(&app.url("/.well-known/myinfo-jwks.json")).await;
    assert_eq!(before["keys"].as_array().unwrap().len(), 2);
    assert!(before["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()));
    myinfo::woken(&app.platform, json!({"rotate_client_keys": true})).await.unwrap();
    let (_, after) = get(&app.url("/.well-known/myinfo-jwks.json")).await;
    assert_eq!(after["keys"].as_array().unwrap().len(), 4, "old and new pair during the overlap");

    // The data key rotates; the job re-wraps every person key, a page per message.
    app.platform.keyring.rotate().await.unwrap();
    let (_, admin) = app.operator("keys@example.sg", &["super-admin"]).await;
    let response = app.client.post(app.url("/v1/admin/myinfo/rewrap")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    let path = format!("/v1/admin/myinfo/rewrap/{}", job["id"].as_str().unwrap());
    let mut report = Value::Null;
    for _ in 0..100 {
        report = app.get_as(&path, &admin).await.1;
        if report["finished_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!((report["rewrapped"].as_u64(), report["skipped"].as_u64()), (Some(3), Some(0)), "{report}");
    // Resuming a finished job sends nothing and counts nothing more.
    let resumed = app.client.post(app.url(&format!("{path}/resume"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resumed.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.get_as(&path, &admin).await.1["rewrapped"], 3);

    // Every record still opens, and a new flow works with the rotated keys.
    let (_, guardian) = app.operator("dpo2@example.sg", &["data-protection"]).await;
    for user_id in &people {
        let (status, data) = app
            .post_json_as(
                &format!("/v1/admin/users/{user_id}/myinfo/reveal"),
                &guardian,
                json!({"reason": "re-wrap check after the key rotation"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{data}");
    }
    let (_, tokens) = investor(&app, "after-rotation@example.sg").await;
    let (status, assessed) = onboard(&app, &access(&tokens), "S9812381D", json!(null)).await;
    assert_eq!((status, assessed["outcome"].as_str()), (StatusCode::OK, Some("passed")), "{assessed}");
}

async fn every_failed_check_stops_the_flow_and_stores_nothing(app: TestApp) {
    let (user_id, tokens) = investor(&app, "checks@example.sg").await;
    let token = access(&tokens);
    let onboarding = app.platform.onboarding();

    // A state the platform never issued.
    let (status, _) = get(&app.url("/v1/myinfo/callback?code=abc&state=forged")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Each fault, with the check it trips.
    let faults = [
        ("wrong_nonce", "nonce_check_failed"),
        ("expired_id_token", "expiry_check_failed"),
        ("forged_id_token", "bad_signature"),
        ("unknown_kid", "unknown_kid"),
        ("bad_dpop", "invalid_dpop_proof"),
        ("wrong_encryption_key", "cannot_decrypt"),
        ("expired_code", "invalid_grant"),
    ];
    for (kind, check) in faults {
        let authorize_url = start(&app, &token, json!(null)).await;
        let callback = log_in_at_singpass(&app, &authorize_url, "S9812381D").await;
        fault(&app, kind).await;
        let (status, problem) = get(&callback).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{kind}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(check), "{kind}: {problem}");
        assert!(onboarding.accreditation(&user_id).await.unwrap().is_none(), "{kind}: nothing stored");
        // The callback was spent: the same URL again is refused.
        assert_eq!(get(&callback).await.0, StatusCode::NOT_FOUND, "{kind}: replayed");
        // The log names the check.
        let log = onboarding.log_of(&user_id, 5).await.unwrap();
        assert_eq!(log[0].outcome, check, "{kind}: {log:?}");
        // Past the key-set reload limit before the next case.
        app.clock.advance(chrono::TimeDelta::seconds(31));
    }
    app.platform.simulators.as_ref().unwrap().singpass.clear_faults();

    // A callback that comes back after ten minutes is refused.
    let authorize_url = start(&app, &token, json!(null)).await;
    let callback = log_in_at_singpass(&app, &authorize_url, "S9812381D").await;
    app.clock.advance(chrono::TimeDelta::minutes(11));
    assert_eq!(get(&callback).await.0, StatusCode::NOT_FOUND);
    // (The investor's tokens expired too: a second investor goes on.)
    let (user_id, tokens) = investor(&app, "checks2@example.sg").await;
    let token = access(&tokens);

    // An investor who cancels at Singpass: logged, and the authorization is spent.
    let authorize_url = start(&app, &token, json!(null)).await;
    let callback = log_in_at_singpass(&app, &authorize_url, "S9812381D").await;
    let state = callback.split("state=").nth(1).unwrap().to_owned();
    let (status, _) = get(&app.url(&format!("/v1/myinfo/callback?state={state}&error=access_denied"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(onboarding.log_of(&user_id, 1).await.unwrap()[0].outcome, "access_denied");
    assert_eq!(get(&callback).await.0, StatusCode::NOT_FOUND);

    // After all that, a clean flow still works and replaying its callback is refused.
    let authorize_url = start(&app, &token, json!(null)).await;
    let callback = log_in_at_singpass(&app, &authorize_url, "S9812381D").await;
    assert_eq!(get(&callback).await.0, StatusCode::OK);
    assert_eq!(get(&callback).await.0, StatusCode::NOT_FOUND);

    // A Singpass signing-key rotation: the unknown kid makes the client fetch the key set
    // again, and the flow succeeds. A second rotation within 30 s of that fetch is not
    // fetched for (the reload is rate-limited); past the limit it is.
    let singpass = &app.platform.simulators.as_ref().unwrap().singpass;
    singpass.rotate_signing_key().unwrap();
    let (status, assessed) = onboard(&app, &token, "S9812381D", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{assessed}");
    singpass.rotate_signing_key().unwrap();
    app.clock.advance(chrono::TimeDelta::seconds(20));
    let (status, problem) = onboard(&app, &token, "S9812381D", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("unknown_kid"), "{problem}");
    app.clock.advance(chrono::TimeDelta::seconds(11));
    let (status, assessed) = onboard(&app, &token, "S9812381D", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{assessed}");
}

/// The simulator holds the platform to RFC 9449 as Singpass does: a proof for another
/// method, a replayed proof, and a resource request proved with another key than the
/// token is bound to are refused.
async fn singpass_refuses_dpop_proofs_with_the_wrong_method_or_key(app: TestApp) {
    use shared::app::myinfo::client::dpop_proof;
    use shared::app::myinfo::keys::MyinfoKeys;
    use shared::jose::{self, SigningKey, b64};
    let (_, tokens) = investor(&app, "dpop@example.sg").await;
    let authorize_url = start(&app, &access(&tokens), json!(null)).await;
    let callback = log_in_at_singpass(&app, &authorize_url, "S9812381D").await;
    let query: std::collections::HashMap<String, String> = url_query(&callback).into_iter().collect();
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, query["state"].as_bytes());
    let flow_key = shared::ports::store::Key::new(
        format!("MYINFO#FLOW#{}", data_encoding::HEXLOWER.encode(hash.as_ref())),
        "FLOW",
    );
    let flow: Value = app.platform.store.get(&flow_key).await.unwrap().unwrap().decode().unwrap();
    let p = &app.platform;
    let keys = MyinfoKeys::load(p.store.as_ref(), p.keyring.as_ref(), p.clock.as_ref(), p.ids.as_ref()).await.unwrap();
    let config = p.singpass.config().clone();
    let now = p.clock.now();
    let assertion = || {
        let claims = json!({"iss": config.client_id, "sub": config.client_id, "aud": config.issuer,
            "iat": now.timestamp(), "exp": now.timestamp() + 60, "jti": ulid::Ulid::new().to_string()});
        keys.signing.sign_json(jose::header(&[("kid", keys.signing_kid.clone().into())]), &claims).unwrap()
    };
    let token_url = format!("{}/token", config.issuer);
    let sim = app.url("/sim/singpass/token");
    let form = |assertion: String| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", query["code"].clone()),
            ("redirect_uri", config.redirect_uri.clone()),
            ("client_id", config.client_id.clone()),
            ("code_verifier", flow["pushed"]["code_verifier"].as_str().unwrap().to_owned()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned()),
            ("client_assertion", assertion),
        ]
    };
    let key = SigningKey::generate().unwrap();
    // The server's nonce first.
    let proof = dpop_proof(&key, "POST", &token_url, None, None, now).unwrap();
    let first = app.client.post(&sim).header("dpop", proof).form(&form(assertion())).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::BAD_REQUEST);
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    // A proof made for GET, then a proof for another URL: refused.
    for (method, url) in [("GET", token_url.as_str()), ("POST", "https://elsewhere.example/token")] {
        let proof = dpop_proof(&key, method, url, Some(&nonce), None, now).unwrap();
        let refused = app.client.post(&sim).header("dpop", proof).form(&form(assertion())).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{method} {url}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "invalid_dpop_proof");
    }
    // A good proof, used twice: the second is a replay.
    let proof = dpop_proof(&key, "POST", &token_url, Some(&nonce), None, now).unwrap();
    let issued = app.client.post(&sim).header("dpop", &proof).form(&form(assertion())).send().await.unwrap();
    assert_eq!(issued.status(), StatusCode::OK);
    let issued: Value = issued.json().await.unwrap();
    let replayed = app.client.post(&sim).header("dpop", &proof).form(&form(assertion())).send().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    // The token is bound to `key`: /userinfo proved with another key is refused, with the
    // right key it answers.
    let access_token = issued["access_token"].as_str().unwrap();
    let ath = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes()));
    let userinfo_url = format!("{}/userinfo", config.issuer);
    let stranger = SigningKey::generate().unwrap();
    for (signer, expected) in [(&stranger, StatusCode::UNAUTHORIZED), (&key, StatusCode::OK)] {
        let proof = dpop_proof(signer, "GET", &userinfo_url, Some(&nonce), Some(&ath), now).unwrap();
        let answer = app
            .client
            .get(app.url("/sim/singpass/userinfo"))
            .header("authorization", format!("DPoP {access_token}"))
            .header("dpop", proof)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), expected);
    }
}

fn url_query(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), shared::domain::uri::percent_decode(v).unwrap()))
        .collect()
}
