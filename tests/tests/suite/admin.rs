//! Operator routes: maker-checker for roles and levels, policy refusals, the audit chain.

use chrono::TimeDelta;
use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::app::audit::AuditLog;
use shared::ports::store::{Item, Key};

on_both_stores!(
    a_role_is_granted_only_when_a_second_operator_approves,
    self_approval_is_refused_and_audited,
    a_checker_cannot_approve_a_change_about_themselves,
    revoking_a_role_ends_the_holders_sessions_at_once,
    level_three_by_manual_review_needs_a_checker_and_expires_after_a_day,
    investors_and_operators_without_the_role_are_refused,
    users_list_in_pages_for_member_management,
    the_audit_chain_detects_an_edited_entry,
);

async fn a_role_is_granted_only_when_a_second_operator_approves(app: TestApp) {
    let (_, maker) = app.operator("members@example.sg", &["member-management"]).await;
    let (_, checker) = app.operator("checker@example.sg", &["co-operator"]).await;
    let investor = app.logged_in("someone@example.sg", "correct horse battery staple").await;
    let (_, me) = app.get_as("/v1/me", investor["access_token"].as_str().unwrap()).await;
    let target = me["user_id"].as_str().unwrap();

    let (status, request) = app
        .post_json_as(&format!("/v1/admin/users/{target}/roles"), &maker, json!({"action": "grant", "role": "deal"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    assert_eq!(request["status"], "pending");
    let id = request["id"].as_str().unwrap();

    // The same change again while pending: refused.
    let (status, _) = app
        .post_json_as(&format!("/v1/admin/users/{target}/roles"), &maker, json!({"action": "grant", "role": "deal"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The maker cannot approve (no checker role); a checker cannot approve their own.
    assert_eq!(
        app.post_as(&format!("/v1/admin/change-requests/{id}/approve"), &maker, None).await,
        StatusCode::FORBIDDEN
    );

    let (status, approved) =
        app.post_json_as(&format!("/v1/admin/change-requests/{id}/approve"), &checker, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(
        app.post_as(&format!("/v1/admin/change-requests/{id}/approve"), &checker, None).await,
        StatusCode::CONFLICT
    );

    // The role is in the next token.
    let (_, tokens) = app.post("/v1/auth/refresh", json!({"refresh_token": investor["refresh_token"]})).await;
    let (_, me) = app.get_as("/v1/me", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(me["roles"], json!(["deal"]));
}

async fn self_approval_is_refused_and_audited(app: TestApp) {
    let (_, admin) = app.operator("admin@example.sg", &["super-admin"]).await;
    let (target, _) = app.operator("other@example.sg", &["finance"]).await;
    let (_, request) = app
        .post_json_as(
            &format!("/v1/admin/users/{target}/roles"),
            &admin,
            json!({"action": "revoke", "role": "finance"}),
        )
        .await;
    let id = request["id"].as_str().unwrap();
    let (status, problem) =
        app.post_json_as(&format!("/v1/admin/change-requests/{id}/approve"), &admin, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem["detail"].as_str().unwrap().contains("self-approval"), "{problem}");
    let (_, log) = app.get_as("/v1/admin/audit", &admin).await;
    let newest = &log["items"][0];
    assert_eq!(
        (newest["action"].as_str(), newest["decision"].as_str()),
        (Some("change-request.approve.revoke-role"), Some("denied"))
    );
}

/// Granting oneself a role through a colleague's proposal: the colleague proposes, the
/// subject of the change is the only checker who tries, and is refused.
async fn a_checker_cannot_approve_a_change_about_themselves(app: TestApp) {
    let (_, maker) = app.operator("admin@example.sg", &["super-admin"]).await;
    let (checker_id, checker) = app.operator("checker@example.sg", &["co-operator"]).await;
    let (_, request) = app
        .post_json_as(
            &format!("/v1/admin/users/{checker_id}/roles"),
            &maker,
            json!({"action": "grant", "role": "finance"}),
        )
        .await;
    let id = request["id"].as_str().unwrap();
    let (status, problem) =
        app.post_json_as(&format!("/v1/admin/change-requests/{id}/approve"), &checker, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("about themselves"), "{problem}");
    let (_, other) = app.operator("other@example.sg", &["co-operator"]).await;
    let (status, _) = app.post_json_as(&format!("/v1/admin/change-requests/{id}/approve"), &other, json!({})).await;
    assert_eq!(status, StatusCode::OK);
}

async fn revoking_a_role_ends_the_holders_sessions_at_once(app: TestApp) {
    let (_, maker) = app.operator("admin@example.sg", &["super-admin"]).await;
    let (_, checker) = app.operator("checker@example.sg", &["co-operator"]).await;
    let (target, finance) = app.operator("finance@example.sg", &["finance"]).await;
    assert_eq!(app.get_as("/v1/me", &finance).await.0, StatusCode::OK);
    let (_, request) = app
        .post_json_as(
            &format!("/v1/admin/users/{target}/roles"),
            &maker,
            json!({"action": "revoke", "role": "finance"}),
        )
        .await;
    let id = request["id"].as_str().unwrap();
    let (status, _) = app.post_json_as(&format!("/v1/admin/change-requests/{id}/approve"), &checker, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get_as("/v1/me", &finance).await.0, StatusCode::UNAUTHORIZED);
}

async fn level_three_by_manual_review_needs_a_checker_and_expires_after_a_day(app: TestApp) {
    let (_, maker) = app.operator("members@example.sg", &["member-management"]).await;
    let (_, checker) = app.operator("checker@example.sg", &["co-operator"]).await;
    // Level 3 needs an enrolled second factor.
    let unenrolled = app.logged_in("someone@example.sg", "correct horse battery staple").await;
    let (_, me) = app.get_as("/v1/me", unenrolled["access_token"].as_str().unwrap()).await;
    let (status, problem) = app
        .post_json_as(
            &format!("/v1/admin/users/{}/level", me["user_id"].as_str().unwrap()),
            &maker,
            json!({"level": 3}),
        )
        .await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("level")));
    assert!(problem["detail"].as_str().unwrap().contains("second factor"), "{problem}");

    let (target, _) = app.operator("enrolled@example.sg", &[]).await;
    assert_eq!(app.post_as("/v1/admin/change-requests/chg_none/approve", &checker, None).await, StatusCode::NOT_FOUND);
    let level = format!("/v1/admin/users/{target}/level");

    let (status, problem) = app.post_json_as(&level, &maker, json!({"level": 2})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("level")));
    let (_, request) = app.post_json_as(&level, &maker, json!({"level": 3})).await;
    let id = request["id"].as_str().unwrap().to_owned();
    let _ = checker;
    app.clock.advance(TimeDelta::hours(24));
    // A day later the operators log in again; the request can no longer be approved.
    let (_, checker) = app.operator("checker2@example.sg", &["co-operator"]).await;
    let (_, maker) = app.operator("members2@example.sg", &["member-management"]).await;
    let (status, _) = app.post_json_as(&format!("/v1/admin/change-requests/{id}/approve"), &checker, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "expired");

    // Once the stale request lapsed, a fresh proposal is possible and can be rejected.
    let (status, request) = app.post_json_as(&level, &maker, json!({"level": 3})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let id = request["id"].as_str().unwrap();
    let (status, rejected) = app
        .post_json_as(
            &format!("/v1/admin/change-requests/{id}/reject"),
            &checker,
            json!({"note": "documents unreadable"}),
        )
        .await;
    assert_eq!((status, rejected["status"].as_str()), (StatusCode::OK, Some("rejected")));
}

async fn investors_and_operators_without_the_role_are_refused(app: TestApp) {
    let investor = app.logged_in("someone@example.sg", "correct horse battery staple").await;
    let token = investor["access_token"].as_str().unwrap();
    for path in ["/v1/admin/users", "/v1/admin/audit", "/v1/admin/change-requests"] {
        let (status, body) = app.get_as(path, token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["type"], "/problems/forbidden");
    }
    let (_, deal) = app.operator("deals@example.sg", &["deal"]).await;
    assert_eq!(app.get_as("/v1/admin/users", &deal).await.0, StatusCode::FORBIDDEN);
    let (target, _) = app.operator("x@example.sg", &[]).await;
    let (status, _) = app
        .post_json_as(&format!("/v1/admin/users/{target}/roles"), &deal, json!({"action": "grant", "role": "deal"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn users_list_in_pages_for_member_management(app: TestApp) {
    let (_, members) = app.operator("members@example.sg", &["member-management"]).await;
    for i in 0..4 {
        app.operator(&format!("user{i}@example.sg"), &[]).await;
    }
    let (status, first) = app.get_as("/v1/admin/users?limit=3", &members).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.get_as(&format!("/v1/admin/users?limit=3&cursor={cursor}"), &members).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    assert!(second["next_cursor"].is_null());
    let (status, problem) = app.get_as("/v1/admin/users?limit=0", &members).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));
}

async fn the_audit_chain_detects_an_edited_entry(app: TestApp) {
    let (maker_id, maker) = app.operator("admin@example.sg", &["super-admin"]).await;
    let (target, _) = app.operator("x@example.sg", &[]).await;
    for role in ["deal", "finance", "issuer"] {
        let (status, _) = app
            .post_json_as(&format!("/v1/admin/users/{target}/roles"), &maker, json!({"action": "grant", "role": role}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let log = AuditLog::new(app.platform.store.clone(), app.platform.clock.clone());
    let keyring = app.platform.audit_keyring.as_ref();
    let today = app.platform.clock.now().date_naive();
    assert_eq!(log.verify_day(keyring, today).await.unwrap(), Vec::<String>::new());

    // Someone with database access rewrites the maker's second entry of the day.
    let key = Key::new(format!("AUDIT#{today}#{maker_id}"), format!("E#{:020}", 2));
    let item = app.platform.store.get(&key).await.unwrap().expect("the maker's second entry");
    let mut entry: Value = item.decode().unwrap();
    entry["actor"] = json!("usr_innocent");
    let edited = Item { index: item.index.clone(), ..Item::new(key, &entry).unwrap() };
    app.platform.store.put(edited, shared::ports::store::Condition::Exists).await.unwrap();
    let breaks = log.verify_day(keyring, today).await.unwrap();
    assert_eq!(breaks, vec![format!("{today}: {maker_id}'s entry 2 does not match its chain")]);
}
