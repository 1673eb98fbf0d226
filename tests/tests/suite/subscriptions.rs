//! Subscriptions through the HTTP API: the deposit account's available balance moves
//! exactly, every refusal changes nothing, one live subscription per investor, and under
//! 500 concurrent requests escrow holds exactly what the live subscriptions say.

use platform_tests::{TestApp, eventually, on_both_stores, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_stores!(subscribing_and_cancelling_move_the_available_balance_exactly);

async fn subscribing_and_cancelling_move_the_available_balance_exactly(app: TestApp) {
    let deal = app.open_deal("201912345K").await;
    let (_, ann) = app.accredited_investor("ann@example.sg").await;
    app.deposit(&ann, "1000.00").await;
    let (_, level_two) = app.funded_investor("two@example.sg", "1000.00").await;
    assert_eq!(app.subscribe(&level_two, &deal, "k", 10).await.0, StatusCode::FORBIDDEN, "level 3 only");

    // Refusals by field, and without a key; nothing held.
    let (status, problem) = app.subscribe(&ann, &deal, "k0", 5).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("units")));
    assert_eq!(app.subscribe(&ann, &deal, "k0", 1001).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let no_key = app
        .client
        .post(app.url(&format!("/v1/deals/{deal}/subscriptions")))
        .bearer_auth(&ann)
        .json(&serde_json::json!({"units": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.subscribe(&ann, "deal_nope", "k0", 10).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.sgd(&ann).await, ("1000.00".into(), "1000.00".into()));

    // Held exactly; the same key answers the same subscription; one live per deal.
    let (status, sub) = app.subscribe(&ann, &deal, "k1", 10).await;
    assert_eq!(
        (status, sub["status"].as_str(), sub["amount"].as_str()),
        (StatusCode::CREATED, Some("live"), Some("1000.00")),
        "{sub}"
    );
    assert_eq!(app.sgd(&ann).await, ("1000.00".into(), "0.00".into()));
    let (status, again) = app.subscribe(&ann, &deal, "k1", 10).await;
    assert_eq!((status, &again["id"]), (StatusCode::CREATED, &sub["id"]));
    assert_eq!(app.subscribe(&ann, &deal, "k1", 11).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.subscribe(&ann, &deal, "k2", 10).await.0, StatusCode::CONFLICT);
    assert_eq!(app.sgd(&ann).await.1, "0.00", "held once");

    // Another investor: cannot cancel Ann's; more than available is refused and holds nothing.
    let (_, ben) = app.accredited_investor("ben@example.sg").await;
    app.deposit(&ben, "500.00").await;
    let cancel = format!("/v1/subscriptions/{}/cancel", sub["id"].as_str().unwrap());
    assert_eq!(app.post_as(&cancel, &ben, None).await, StatusCode::NOT_FOUND);
    assert_eq!(app.subscribe(&ben, &deal, "b1", 20).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.sgd(&ben).await, ("500.00".into(), "500.00".into()));
    assert_eq!(app.subscribe(&ben, &deal, "b3", 10).await.0, StatusCode::UNPROCESSABLE_ENTITY, "1,000.00 > 500.00");

    // Cancel releases the hold exactly; re-applying takes a new key.
    assert_eq!(app.post_as(&cancel, &ann, None).await, StatusCode::OK);
    assert_eq!(app.sgd(&ann).await, ("1000.00".into(), "1000.00".into()));
    app.clock.advance(chrono::TimeDelta::seconds(1));
    let (status, resub) = app.subscribe(&ann, &deal, "k3", 10).await;
    assert_eq!(status, StatusCode::CREATED, "{resub}");
    let (_, mine) = app.get_as("/v1/me/subscriptions", &ann).await;
    let statuses: Vec<&str> = mine["items"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["live", "cancelled"], "newest first; refusals recorded nothing");

    // Operators: the book and its totals, which equal what escrow holds.
    let (_, ops) = app.operator("deal-ops@example.sg", &["deal"]).await;
    let (status, totals) = app.get_as(&format!("/v1/admin/deals/{deal}/totals"), &ops).await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    assert_eq!((totals["live_subscriptions"].as_u64(), totals["units_requested"].as_u64()), (Some(1), Some(10)));
    assert_eq!((totals["amount_held"].as_str(), totals["escrow_pending"].as_str()), (Some("1000.00"), Some("1000.00")));
    let (_, book) = app.get_as(&format!("/v1/admin/deals/{deal}/subscriptions?limit=10"), &ops).await;
    assert!(book["items"].as_array().unwrap().len() >= 2, "{book}");
    assert_eq!(app.get_as(&format!("/v1/admin/deals/{deal}/totals"), &ann).await.0, StatusCode::FORBIDDEN);

    // Closed: no subscribing, no cancelling; settlement then charges exactly what was held
    // (the deal is undersubscribed).
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;
    assert_eq!(app.subscribe(&ben, &deal, "b4", 10).await.0, StatusCode::CONFLICT);
    let cancel = format!("/v1/subscriptions/{}/cancel", resub["id"].as_str().unwrap());
    assert_eq!(app.post_as(&cancel, &ann, None).await, StatusCode::CONFLICT);
    platform_tests::settle::wait_for_state(&app.platform, &deal, "issued", 60).await;
    assert_eq!(app.sgd(&ann).await, ("0.00".into(), "0.00".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_requests_never_overdraw_and_escrow_equals_the_live_book() {
    let app = spawn_app().await;
    let deal = app.open_deal("201912345K").await;
    let mut investors = Vec::new();
    for i in 0..50 {
        let (_, token) = app.accredited_investor(&format!("inv{i}@example.sg")).await;
        // Between one and three subscriptions' worth: some requests must be refused.
        app.deposit(&token, &format!("{}.00", 1000 + 700 * (i % 4))).await;
        investors.push(token);
    }
    let requests = (0..500).map(|n| {
        let (app, deal) = (&app, &deal);
        let token = &investors[n % 50];
        async move {
            let round = n / 50;
            match round % 3 {
                // Apply; the next round sends the same key and body again (a retry).
                0 | 1 => {
                    let attempt = round / 3;
                    app.subscribe(token, deal, &format!("k{attempt}"), 10 + (attempt as u64 % 3) * 5).await.0
                }
                _ => {
                    let (_, mine) = app.get_as("/v1/me/subscriptions?limit=5", token).await;
                    let live = mine["items"].as_array().and_then(|s| s.iter().find(|s| s["status"] == "live").cloned());
                    match live {
                        Some(sub) => {
                            app.post_as(
                                &format!("/v1/subscriptions/{}/cancel", sub["id"].as_str().unwrap()),
                                token,
                                None,
                            )
                            .await
                        }
                        None => StatusCode::OK,
                    }
                }
            }
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| s.is_success() || s.is_client_error()), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::CREATED) && statuses.iter().any(|s| s.is_client_error()));

    let mut live_total: u128 = 0;
    for token in &investors {
        let (_, mine) = app.get_as("/v1/me/subscriptions?limit=200", token).await;
        let live: Vec<&Value> = mine["items"].as_array().unwrap().iter().filter(|s| s["status"] == "live").collect();
        assert!(live.len() <= 1, "one live subscription per investor: {mine}");
        let (_, accounts) = app.get_as("/v1/accounts/me", token).await;
        let sgd = &accounts["accounts"][0];
        assert!(!sgd["available"].as_str().unwrap().starts_with('-'), "overdrawn: {sgd}");
        let held = live.first().map_or("0.00", |s| s["amount"].as_str().unwrap());
        assert_eq!(sgd["pending_out"].as_str(), Some(held), "the hold is the live subscription");
        live_total += held.replace('.', "").parse::<u128>().unwrap();
    }
    let (_, ops) = app.operator("ops@example.sg", &["deal"]).await;
    let (_, totals) = app.get_as(&format!("/v1/admin/deals/{deal}/totals"), &ops).await;
    assert_eq!(totals["amount_held"], totals["escrow_pending"], "{totals}");
    assert_eq!(totals["escrow_pending"].as_str().unwrap().replace('.', "").parse::<u128>().unwrap(), live_total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_deal_releases_every_hold() {
    let app = spawn_app().await;
    let deal = app.open_deal("201912345K").await;
    let mut investors = Vec::new();
    for i in 0..3 {
        let (_, token) = app.accredited_investor(&format!("c{i}@example.sg")).await;
        app.deposit(&token, "2000.00").await;
        assert_eq!(app.subscribe(&token, &deal, "k", 10 + i).await.0, StatusCode::CREATED);
        investors.push(token);
    }
    let (_, ops) = app.operator("ops@example.sg", &["deal"]).await;
    // A published deal is cancelled only with a second deal operator's approval; until
    // then every hold stays.
    let (status, request) = app.post_json_as(&format!("/v1/admin/deals/{deal}/cancel"), &ops, json!({})).await;
    assert_eq!((status, request["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{request}");
    assert_eq!(app.sgd(&investors[0]).await, ("2000.00".into(), "1000.00".into()), "held until approved");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &ops, None).await, StatusCode::FORBIDDEN, "not by its maker");
    let (_, checker) = app.operator("checker@example.sg", &["deal"]).await;
    assert_eq!(app.post_as(&approve, &checker, None).await, StatusCode::OK);
    // The sweep releases the holds.
    for token in &investors {
        eventually("the hold was released", || async { app.sgd(token).await == ("2000.00".into(), "2000.00".into()) })
            .await;
        let (_, mine) = app.get_as("/v1/me/subscriptions", token).await;
        assert_eq!(mine["items"][0]["status"], "cancelled");
    }
    let (_, totals) = app.get_as(&format!("/v1/admin/deals/{deal}/totals"), &ops).await;
    assert_eq!((totals["live_subscriptions"].as_u64(), totals["escrow_pending"].as_str()), (Some(0), Some("0.00")));
    assert_eq!(
        app.post_as(&format!("/v1/admin/deals/{deal}/cancel"), &ops, None).await,
        StatusCode::OK,
        "again: harmless"
    );
}
