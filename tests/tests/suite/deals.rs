//! Deals through the HTTP API: registration, what each state lets change, publication by
//! a second deal operator, the window opening and closing the deal, early close and
//! cancellation, and who sees what.

use chrono::TimeDelta;
use platform_tests::{TestApp, eventually, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_stores!(
    a_deal_goes_from_draft_through_publication_to_open_and_closed_by_its_window,
    a_publication_is_not_approved_when_the_deal_no_longer_matches_what_was_proposed,
    a_published_deal_is_not_edited_cancelled_or_closed_early_by_one_operator,
);

fn new_deal(issuer_id: &str, app: &TestApp) -> Value {
    let now = app.platform.clock.now();
    json!({
        "issuer_id": issuer_id,
        "building": {"name": "Marina Tower", "address": "1 Marina Blvd", "type": "office", "valuation": "250000000.00"},
        "supply": 10000, "unit_price": "100.00", "min_units": 10, "max_units": 1000,
        "opens_at": (now + TimeDelta::hours(1)).to_rfc3339(), "closes_at": (now + TimeDelta::days(7)).to_rfc3339(),
        "documents": ["doc://prospectus"]
    })
}

async fn state_of(app: &TestApp, id: &str, token: &str) -> String {
    let (status, deal) = app.get_as(&format!("/v1/deals/{id}"), token).await;
    assert_eq!(status, StatusCode::OK, "{deal}");
    deal["state"].as_str().unwrap().to_owned()
}

/// A deal's state as stored (the clock moves past every token's life while it is awaited).
async fn public_state(app: &TestApp, id: &str) -> String {
    app.platform.deals().get(id).await.unwrap().unwrap().state.as_str().to_owned()
}

async fn a_deal_goes_from_draft_through_publication_to_open_and_closed_by_its_window(app: TestApp) {
    let s = app.approved_issuer("201912345K").await;
    let (_, investor) = app.accredited_investor("investor@example.sg").await;
    let (_, unaccredited) = app.operator("unaccredited@example.sg", &[]).await;

    // Registration: deal operators only, valid terms, an approved issuer.
    assert_eq!(
        app.post_json_as("/v1/admin/deals", &investor, new_deal(&s.issuer_id, &app)).await.0,
        StatusCode::FORBIDDEN
    );
    let mut bad = new_deal(&s.issuer_id, &app);
    bad["max_units"] = json!(5);
    let (status, problem) = app.post_json_as("/v1/admin/deals", &s.maker, bad).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("max_units")),
        "{problem}"
    );
    let (status, problem) = app.post_json_as("/v1/admin/deals", &s.maker, new_deal("iss_nobody", &app)).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("issuer_id")));
    let (status, deal) = app.post_json_as("/v1/admin/deals", &s.maker, new_deal(&s.issuer_id, &app)).await;
    assert_eq!((status, deal["state"].as_str()), (StatusCode::CREATED, Some("draft")), "{deal}");
    let id = deal["id"].as_str().unwrap().to_owned();

    // A draft is seen by deal operators and its issuer's users only; no deal is shown to
    // the public or to an investor below level 3 (SFA s275).
    let anonymous = app.client.get(app.url(&format!("/v1/deals/{id}"))).send().await.unwrap().status();
    assert_eq!(anonymous, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_as(&format!("/v1/deals/{id}"), &unaccredited).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get_as(&format!("/v1/deals/{id}"), &investor).await.0, StatusCode::NOT_FOUND);
    assert_eq!(state_of(&app, &id, &s.owner).await, "draft");
    let (status, own) = app.get_as(&format!("/v1/issuers/{}/deals", s.issuer_id), &s.owner).await;
    assert_eq!((status, own["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    let other = app.approved_issuer("53312345D").await;
    // Another issuer's user is no accredited investor: refused before the deal is looked at.
    assert_eq!(app.get_as(&format!("/v1/deals/{id}"), &other.owner).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get_as(&format!("/v1/issuers/{}/deals", s.issuer_id), &other.owner).await.0, StatusCode::NOT_FOUND);

    // Economic terms change freely before publication.
    let (status, edited) =
        app.patch_json_as(&format!("/v1/admin/deals/{id}"), &s.maker, json!({"supply": 12000})).await;
    assert_eq!((status, edited["supply"].as_u64()), (StatusCode::OK, Some(12000)), "{edited}");

    // Publication: proposed (pending approval), refused to its maker, approved by another.
    let (status, request) = app.post_json_as(&format!("/v1/admin/deals/{id}/publish"), &s.maker, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    assert_eq!(state_of(&app, &id, &s.maker).await, "pending_approval");
    assert_eq!(request["snapshot_sha256"].as_str().map(str::len), Some(64), "{request}");
    // The checker approves exactly what was proposed: no edit while it waits.
    let (status, problem) = app.patch_json_as(&format!("/v1/admin/deals/{id}"), &s.maker, json!({"supply": 1})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "/problems/conflict");
    let (status, problem) =
        app.patch_json_as(&format!("/v1/admin/deals/{id}"), &s.maker, json!({"documents": ["doc://other"]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &s.maker, None).await, StatusCode::FORBIDDEN, "no self-approval");
    assert_eq!(app.post_as(&approve, &investor, None).await, StatusCode::FORBIDDEN);
    assert_eq!(app.post_as(&approve, &s.checker, None).await, StatusCode::OK);
    assert_eq!(state_of(&app, &id, &investor).await, "published");

    // Published: nothing economic changes; descriptions and documents still may, with a
    // second deal operator's approval.
    let (status, problem) =
        app.patch_json_as(&format!("/v1/admin/deals/{id}"), &s.maker, json!({"unit_price": "99.00"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("unit_price"));
    let docs = json!({"documents": ["doc://prospectus", "doc://valuation-2026"]});
    let (status, edit) = app.patch_json_as(&format!("/v1/admin/deals/{id}"), &s.maker, docs).await;
    assert_eq!((status, edit["change"]["kind"].as_str()), (StatusCode::ACCEPTED, Some("edit_deal")), "{edit}");
    let (_, unchanged) = app.get_as(&format!("/v1/deals/{id}"), &investor).await;
    assert_eq!(unchanged["documents"], json!(["doc://prospectus"]), "nothing changes before approval");
    let again = json!({"building_name": "Harbour Point II"});
    assert_eq!(app.patch_json_as(&format!("/v1/admin/deals/{id}"), &s.maker, again).await.0, StatusCode::CONFLICT);
    let approve_edit = format!("/v1/admin/change-requests/{}/approve", edit["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve_edit, &s.maker, None).await, StatusCode::FORBIDDEN, "no self-approval");
    assert_eq!(app.post_as(&approve_edit, &s.checker, None).await, StatusCode::OK);
    let (_, edited) = app.get_as(&format!("/v1/deals/{id}"), &investor).await;
    assert_eq!(edited["documents"], json!(["doc://prospectus", "doc://valuation-2026"]), "{edited}");
    // The audit log records the approved edit with the field's old and new value.
    let (_, auditor) = app.operator("auditor@example.sg", &["co-operator"]).await;
    let (status, audit) = app.get_as("/v1/admin/audit?limit=200", &auditor).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let edit = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["action"] == "change-request.approve.edit-deal"
                && e["reason"].as_str().unwrap().contains("valuation-2026")
        })
        .expect("the documents edit is audited");
    assert!(edit["reason"].as_str().unwrap().contains("terms.documents: [\"doc://prospectus\"] -> "), "{edit}");

    // Public reads: published and later, filterable by a public state only.
    let (status, listed) = app.get_as("/v1/deals?state=published", &investor).await;
    assert_eq!((status, listed["items"][0]["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    assert_eq!(app.get_as("/v1/deals?state=draft", &investor).await.0, StatusCode::BAD_REQUEST);

    // The window opens and closes it (the sweep follows the clock); closing happens once.
    app.clock.advance(TimeDelta::hours(1));
    eventually("the deal opened", || async { public_state(&app, &id).await == "open" }).await;
    app.clock.advance(TimeDelta::days(7));
    // Closing starts the allocation; with nothing subscribed, settlement ends at once.
    eventually("the deal closed and settled", || async { public_state(&app, &id).await == "issued" }).await;
    // Eight days on, everyone signs in again.
    let (_, finance) = app.operator("finance-2@example.sg", &["finance"]).await;
    let (_, maker) = app.operator("maker-2@example.sg", &["deal"]).await;
    assert_eq!(app.post_as(&format!("/v1/admin/deals/{id}/close"), &finance, None).await, StatusCode::CONFLICT);
    assert_eq!(app.post_as(&format!("/v1/admin/deals/{id}/cancel"), &maker, None).await, StatusCode::CONFLICT);
    let late = json!({"documents": []});
    assert_eq!(app.patch_json_as(&format!("/v1/admin/deals/{id}"), &maker, late).await.0, StatusCode::CONFLICT);

    // A draft is cancelled; an open deal is closed early by finance, and not by a deal operator.
    let (_, second) = app.post_json_as("/v1/admin/deals", &maker, new_deal(&s.issuer_id, &app)).await;
    let second = second["id"].as_str().unwrap();
    assert_eq!(app.post_as(&format!("/v1/admin/deals/{second}/close"), &finance, None).await, StatusCode::CONFLICT);
    assert_eq!(app.post_as(&format!("/v1/admin/deals/{second}/cancel"), &maker, None).await, StatusCode::OK);
    assert_eq!(state_of(&app, second, &maker).await, "cancelled");

    let (_, third) = app.post_json_as("/v1/admin/deals", &maker, new_deal(&s.issuer_id, &app)).await;
    let third = third["id"].as_str().unwrap().to_owned();
    let (_, checker) = app.operator("checker-2@example.sg", &["deal"]).await;
    let (_, request) = app.post_json_as(&format!("/v1/admin/deals/{third}/publish"), &maker, json!({})).await;
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &checker, None).await, StatusCode::OK);
    app.clock.advance(TimeDelta::minutes(61));
    eventually("the third deal opened", || async { public_state(&app, &third).await == "open" }).await;
    let (_, finance) = app.operator("finance-3@example.sg", &["finance"]).await;
    let (_, maker) = app.operator("maker-3@example.sg", &["deal"]).await;
    assert_eq!(app.post_as(&format!("/v1/admin/deals/{third}/close"), &maker, None).await, StatusCode::FORBIDDEN);
    let (status, request) = app.post_json_as(&format!("/v1/admin/deals/{third}/close"), &finance, json!({})).await;
    assert_eq!((status, request["change"]["kind"].as_str()), (StatusCode::ACCEPTED, Some("close_deal")), "{request}");
    assert_eq!(state_of(&app, &third, &maker).await, "open", "open until a second finance operator approves");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &finance, None).await, StatusCode::FORBIDDEN, "no self-approval");
    assert_eq!(app.post_as(&approve, &maker, None).await, StatusCode::FORBIDDEN, "a deal operator may not close");
    let (_, second_finance) = app.operator("finance-4@example.sg", &["finance"]).await;
    assert_eq!(app.post_as(&approve, &second_finance, None).await, StatusCode::OK);
    // Closed early, and its allocation follows (nothing subscribed: it ends issued).
    eventually("the third deal closed and settled", || async { public_state(&app, &third).await == "issued" }).await;
}

/// The request carries a digest of the terms it was proposed on: terms changed by any path
/// (here straight in the table) make the approval fail rather than publish something the
/// checker never saw.
async fn a_publication_is_not_approved_when_the_deal_no_longer_matches_what_was_proposed(app: TestApp) {
    use shared::ports::store::{Condition, Item, Key};
    let s = app.approved_issuer("201912345K").await;
    let (_, deal) = app.post_json_as("/v1/admin/deals", &s.maker, new_deal(&s.issuer_id, &app)).await;
    let id = deal["id"].as_str().unwrap().to_owned();
    let (_, request) = app.post_json_as(&format!("/v1/admin/deals/{id}/publish"), &s.maker, json!({})).await;
    let key = Key::new(format!("DEAL#{id}"), "DEAL");
    let item = app.platform.store.get(&key).await.unwrap().expect("the deal item");
    let mut stored: Value = item.decode().unwrap();
    stored["terms"]["unit_price"] = json!(1);
    let mut tampered = Item::new(key, &stored).unwrap();
    tampered.index = item.index.clone();
    app.platform.store.put(tampered, Condition::VersionIs(item.version)).await.unwrap();
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    let (status, problem) = app.post_json_as(&approve, &s.checker, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(state_of(&app, &id, &s.maker).await, "pending_approval");
}

/// After publication, what investors read and whether the deal goes on are maker-checker
/// changes: one operator's edit, cancellation or early close changes nothing until a
/// second approves, and an approval on a deal that moved on since is refused.
async fn a_published_deal_is_not_edited_cancelled_or_closed_early_by_one_operator(app: TestApp) {
    let deal = app.open_deal("201912345K").await;
    let (_, maker) = app.operator("maker@example.sg", &["deal"]).await;
    let (_, checker) = app.operator("checker@example.sg", &["deal"]).await;
    let (_, finance) = app.operator("finance@example.sg", &["finance"]).await;
    let approve = |request: &Value| format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());

    // A cancellation waits for a second deal operator; its maker cannot approve it.
    let (status, cancel) = app.post_json_as(&format!("/v1/admin/deals/{deal}/cancel"), &maker, json!({})).await;
    assert_eq!((status, cancel["change"]["kind"].as_str()), (StatusCode::ACCEPTED, Some("cancel_deal")), "{cancel}");
    assert_eq!(app.post_as(&approve(&cancel), &maker, None).await, StatusCode::FORBIDDEN);
    assert_eq!(public_state(&app, &deal).await, "open");
    // One pending request may end the deal: an early close waits for the cancellation.
    let (status, problem) = app.post_json_as(&format!("/v1/admin/deals/{deal}/close"), &finance, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    // An edit approved meanwhile changes what the cancellation was proposed on: the
    // checker would approve something the maker never saw, so the approval is refused.
    let (status, edit) = app
        .patch_json_as(&format!("/v1/admin/deals/{deal}"), &maker, json!({"building_name": "Harbour Point II"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    assert_eq!(app.post_as(&approve(&edit), &checker, None).await, StatusCode::OK);
    let (status, problem) = app.post_json_as(&approve(&cancel), &checker, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(public_state(&app, &deal).await, "open");
    let reject = format!("/v1/admin/change-requests/{}/reject", cancel["id"].as_str().unwrap());
    assert_eq!(app.post_json_as(&reject, &checker, json!({"note": "stale"})).await.0, StatusCode::OK);

    // An early close proposed an hour before the window ends is refused once the window
    // closed the deal.
    app.clock.advance(TimeDelta::hours(6 * 24 + 22));
    let (_, finance) = app.operator("finance-2@example.sg", &["finance"]).await;
    let (status, close) = app.post_json_as(&format!("/v1/admin/deals/{deal}/close"), &finance, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{close}");
    app.clock.advance(TimeDelta::hours(2));
    eventually("the window closed the deal", || async { public_state(&app, &deal).await != "open" }).await;
    let (_, finance_checker) = app.operator("finance-checker@example.sg", &["finance"]).await;
    let (status, problem) = app.post_json_as(&approve(&close), &finance_checker, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("cannot close"), "{problem}");
}
