//! Issuer onboarding through the HTTP API: who may submit, validation by field, who may
//! read it, and approval by a second deal operator.

use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_stores!(an_issuer_is_onboarded_and_approved_by_a_second_deal_operator);

fn onboarding(uen: &str) -> Value {
    json!({
        "company_name": "Marina Holdings Pte Ltd",
        "uen": uen,
        "contact": {"name": "Tan Wei Ming", "email": "wei.ming@marina.example.sg", "phone": "+65 6123 4567"},
        "bank": {"bank_name": "DBS", "account_name": "Marina Holdings Pte Ltd", "account_number": "012-345678-9"},
        "documents": ["doc://acra-bizfile"]
    })
}

async fn an_issuer_is_onboarded_and_approved_by_a_second_deal_operator(app: TestApp) {
    let (_, investor) = app.operator("investor@example.sg", &[]).await;
    let (status, _) = app.post_json_as("/v1/issuers", &investor, onboarding("201912345K")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only issuer users onboard");

    let (_, tokens) = app.operator_tokens("owner@marina.example.sg", &["issuer"]).await;
    let owner = tokens["access_token"].as_str().unwrap();
    let (status, problem) = app.post_json_as("/v1/issuers", owner, onboarding("2019-12345")).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("uen")),
        "{problem}"
    );
    let (status, issuer) = app.post_json_as("/v1/issuers", owner, onboarding("201912345K")).await;
    assert_eq!((status, issuer["status"].as_str()), (StatusCode::CREATED, Some("pending_review")), "{issuer}");
    let id = issuer["id"].as_str().unwrap();
    assert_eq!(app.post_json_as("/v1/issuers", owner, onboarding("53312345D")).await.0, StatusCode::CONFLICT);
    let (_, rival) = app.operator("rival@example.sg", &["issuer"]).await;
    assert_eq!(
        app.post_json_as("/v1/issuers", &rival, onboarding("201912345K")).await.0,
        StatusCode::CONFLICT,
        "UEN taken"
    );

    // The owner's next token acts for the issuer; nobody else's does.
    let (status, refreshed) = app.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    assert_eq!(status, StatusCode::OK);
    let owner = refreshed["access_token"].as_str().unwrap();
    let (status, seen) = app.get_as(&format!("/v1/issuers/{id}"), owner).await;
    assert_eq!((status, seen["uen"].as_str()), (StatusCode::OK, Some("201912345K")), "{seen}");
    assert_eq!(app.get_as(&format!("/v1/issuers/{id}"), &rival).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get_as(&format!("/v1/issuers/{id}"), &investor).await.0, StatusCode::NOT_FOUND);

    // A deal operator proposes; they cannot approve it themselves; a second one does.
    let (_, maker) = app.operator("maker@example.sg", &["deal"]).await;
    let (_, checker) = app.operator("checker@example.sg", &["deal"]).await;
    assert_eq!(app.get_as("/v1/admin/issuers", &investor).await.0, StatusCode::FORBIDDEN);
    let (status, listed) = app.get_as("/v1/admin/issuers", &maker).await;
    assert_eq!((status, listed["items"][0]["id"].as_str()), (StatusCode::OK, Some(id)));
    let decision = format!("/v1/admin/issuers/{id}/decision");
    assert_eq!(app.post_json_as(&decision, &investor, json!({"decision": "approve"})).await.0, StatusCode::FORBIDDEN);
    let (status, request) = app.post_json_as(&decision, &maker, json!({"decision": "approve"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    assert_eq!(
        app.post_json_as(&decision, &checker, json!({"decision": "reject"})).await.0,
        StatusCode::CONFLICT,
        "one pending decision"
    );
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &maker, None).await, StatusCode::FORBIDDEN, "no self-approval");
    assert_eq!(app.get_as(&format!("/v1/issuers/{id}"), owner).await.1["status"], "pending_review");
    assert_eq!(app.post_as(&approve, &checker, None).await, StatusCode::OK);
    assert_eq!(app.get_as(&format!("/v1/issuers/{id}"), owner).await.1["status"], "approved");
    assert_eq!(
        app.post_json_as(&decision, &maker, json!({"decision": "reject"})).await.0,
        StatusCode::CONFLICT,
        "decided once"
    );
}

/// The contact person and bank account are stored sealed: the raw item names neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contact_and_bank_account_are_stored_sealed() {
    let app = platform_tests::spawn_app().await;
    let (_, owner) = app.operator("owner@example.sg", &["issuer"]).await;
    let (status, issuer) = app.post_json_as("/v1/issuers", &owner, onboarding("201912345K")).await;
    assert_eq!(status, StatusCode::CREATED, "{issuer}");
    let key = shared::app::issuers::issuer_key(issuer["id"].as_str().unwrap());
    let raw = app.platform.store.get(&key).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw.body);
    for secret in ["Tan Wei Ming", "wei.ming@marina.example.sg", "012-345678-9", "6123 4567"] {
        assert!(!text.contains(secret), "{secret} stored in the clear: {text}");
    }
    assert!(text.contains("Marina Holdings"), "the company name is not secret");
    assert_eq!(issuer["bank"]["account_number"], "012-345678-9", "the caller reads it back");
}
