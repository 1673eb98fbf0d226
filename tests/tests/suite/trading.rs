//! The secondary market on the local platform, on both stores: a deal issues, investors
//! trade through the HTTP API (partial fills, price improvement, self-trade prevention,
//! cancels, refusals), operators halt and resume under maker-checker, the market closes
//! and the night's reconciliation is clean; and many investors placing and cancelling at
//! once on one asset never oversell a holding or overspend a deposit account.

use std::time::Duration;

use chrono::TimeDelta;
use platform_tests::settle::{wait_for_chain, wait_for_state};
use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::app::reconcile::RunVerdict;
use shared::app::trading::{OrderState, Placement, TradingError};
use shared::domain::ledger::{Account, Kind, SGD};
use shared::domain::market::Side;

on_both_stores!(
    investors_trade_through_the_api_the_market_closes_and_the_nights_reconciliation_is_clean,
    operators_halt_and_resume_a_market_under_maker_checker,
    many_investors_placing_and_cancelling_at_once_never_oversell_or_overspend,
    a_trade_in_flight_at_the_cut_off_is_a_timing_difference_and_a_lock_counts_its_units_not_yet_traded,
);

async fn order(app: &TestApp, token: &str, asset: &str, key: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&format!("/v1/markets/{asset}/orders")))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the order is no longer on its way to the book (it rests, traded or ended).
async fn settled_order(app: &TestApp, token: &str, id: &str) -> Value {
    let trading = app.platform.trading();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let order = trading.get(id).await.unwrap().unwrap();
        if order.seq.is_some() || order.state != OrderState::Open {
            return app.get_as(&format!("/v1/orders/{id}"), token).await.1;
        }
        assert!(std::time::Instant::now() < deadline, "order {id} never reached the book");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn posted(app: &TestApp, account: &str) -> i128 {
    app.platform.ledger().account(account).await.unwrap().map_or(0, |a| a.posted_balance())
}

/// An issued deal of `holders` (name, units subscribed at 100.00); answers the deal, the
/// asset and each holder's (id, token).
async fn issued(app: &TestApp, holders: &[(&str, u64)]) -> (String, String, Vec<(String, String)>) {
    let deal = app.open_deal("201912345K").await;
    let mut investors = Vec::new();
    for (name, units) in holders {
        let (id, token) = app.accredited_investor(&format!("{name}@example.sg")).await;
        app.deposit(&token, "100000.00").await;
        let (status, sub) = app.subscribe(&token, &deal, "k1", *units).await;
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        investors.push((id, token));
    }
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;
    wait_for_state(&app.platform, &deal, "issued", 120).await;
    let asset = app.platform.deals().get(&deal).await.unwrap().unwrap().asset;
    (deal, asset, investors)
}

async fn investors_trade_through_the_api_the_market_closes_and_the_nights_reconciliation_is_clean(app: TestApp) {
    let (_, asset, holders) = issued(&app, &[("ann", 100), ("ben", 200)]).await;
    let [(ann, ann_t), (ben, ben_t)] = <[(String, String); 2]>::try_from(holders).unwrap();
    let (cal, cal_t) = app.accredited_investor("cal@example.sg").await;
    app.deposit(&cal_t, "50000.00").await;

    // The market opens at the offering's price: 100.00, band 90.00 to 110.00, no trades yet.
    let (status, market) = app.get_as(&format!("/v1/markets/{asset}"), &cal_t).await;
    assert_eq!(status, StatusCode::OK, "{market}");
    assert_eq!(
        (
            market["status"].as_str(),
            market["reference_price"].as_str(),
            market["band_low"].as_str(),
            market["band_high"].as_str()
        ),
        (Some("open"), Some("100.00"), Some("90.00"), Some("110.00"))
    );
    assert_eq!(app.get_as("/v1/markets/DABS-nothing", &cal_t).await.0, StatusCode::NOT_FOUND);
    let (_, level2) = app.operator("lee@example.sg", &[]).await;
    assert_eq!(app.get_as(&format!("/v1/markets/{asset}"), &level2).await.0, StatusCode::FORBIDDEN);
    let sell = |price: &str, quantity: u64| json!({"side": "sell", "price": price, "quantity": quantity});
    let buy = |price: &str, quantity: u64| json!({"side": "buy", "price": price, "quantity": quantity});
    assert_eq!(order(&app, &level2, &asset, "x", buy("100.00", 1)).await.0, StatusCode::FORBIDDEN);

    // Refusals name the field and lock nothing.
    let (ann_posted, ann_units) =
        (posted(&app, &format!("deposit:{ann}:SGD")).await, posted(&app, &format!("holding:{ann}:{asset}")).await);
    for (body, field) in [
        (sell("110.01", 10), "price"),
        (sell("89.99", 10), "price"),
        (sell("100.005", 10), "price"),
        (sell("100.00", 101), "quantity"),
        (sell("100.00", 0), "quantity"),
        (buy("100.00", 1_000), "quantity"),
    ] {
        let (status, problem) = order(&app, &ann_t, &asset, "refused", body.clone()).await;
        assert!(status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"].as_str(), Some(field), "{body}: {problem}");
    }
    assert_eq!(posted(&app, &format!("holding:{ann}:{asset}")).await, ann_units, "nothing locked");
    assert_eq!(app.sgd(&ann_t).await.1, shared::domain::money::format_cents(ann_posted), "nothing held");
    assert_eq!(order(&app, &ann_t, &asset, "no-body", json!({"side": "sell"})).await.0, StatusCode::BAD_REQUEST);

    // Two offers, then a buy that takes both at their prices: one partly.
    let (status, ann_sell) = order(&app, &ann_t, &asset, "a1", sell("101.00", 60)).await;
    assert_eq!((status, ann_sell["state"].as_str()), (StatusCode::CREATED, Some("open")), "{ann_sell}");
    let (_, again) = order(&app, &ann_t, &asset, "a1", sell("101.00", 60)).await;
    assert_eq!(again["id"], ann_sell["id"], "the same key answers the same order");
    assert_eq!(order(&app, &ann_t, &asset, "a1", sell("101.00", 61)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, ben_sell) = order(&app, &ben_t, &asset, "b1", sell("100.50", 50)).await;
    let ann_sell_id = ann_sell["id"].as_str().unwrap().to_owned();
    settled_order(&app, &ann_t, &ann_sell_id).await;
    settled_order(&app, &ben_t, ben_sell["id"].as_str().unwrap()).await;
    assert_eq!(posted(&app, &format!("holding:{ann}:{asset}")).await, 40, "60 units locked");

    let (status, cal_buy) = order(&app, &cal_t, &asset, "c1", buy("101.50", 80)).await;
    assert_eq!(status, StatusCode::CREATED, "{cal_buy}");
    // Held: 80 × 101.50 = 8,120.00 plus the fee at 20 bp, 16.24.
    assert_eq!(cal_buy["held"].as_str(), Some("8136.24"), "{cal_buy}");
    let cal_buy = settled_order(&app, &cal_t, cal_buy["id"].as_str().unwrap()).await;
    // 50 at 100.50 (5,025.00, fee 10.05) and 30 at 101.00 (3,030.00, fee 6.06).
    assert_eq!(
        (cal_buy["state"].as_str(), cal_buy["filled"].as_u64(), cal_buy["settled"].as_str(), cal_buy["fees"].as_str()),
        (Some("filled"), Some(80), Some("8071.11"), Some("16.11")),
        "{cal_buy}"
    );
    assert_eq!(app.sgd(&cal_t).await, ("41928.89".into(), "41928.89".into()), "the price improvement came back");
    assert_eq!(posted(&app, &format!("holding:{cal}:{asset}")).await, 80);
    assert_eq!(app.sgd(&ben_t).await.0, "85014.95", "80,000.00 after subscribing, plus 5,025.00 less 10.05");
    let (_, trades) = app.get_as("/v1/me/trades", &cal_t).await;
    let mut fills: Vec<(&str, u64, &str, bool)> = trades["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["price"].as_str().unwrap(),
                t["quantity"].as_u64().unwrap(),
                t["side"].as_str().unwrap(),
                t["maker"].as_bool().unwrap(),
            )
        })
        .collect();
    fills.sort();
    assert_eq!(fills, [("100.50", 50, "buy", false), ("101.00", 30, "buy", false)], "{trades}");
    let (_, ann_trades) = app.get_as("/v1/me/trades", &ann_t).await;
    assert_eq!(ann_trades["items"][0]["net"].as_str(), Some("3023.94"), "{ann_trades}");
    let (_, market) = app.get_as(&format!("/v1/markets/{asset}"), &cal_t).await;
    assert_eq!(
        (
            market["last_price"].as_str(),
            market["day"]["volume"].as_u64(),
            market["best_ask"].as_str(),
            market["best_bid"].as_str()
        ),
        (Some("101.00"), Some(80), Some("101.00"), None),
        "{market}"
    );
    assert_eq!((market["day"]["open"].as_str(), market["day"]["low"].as_str()), (Some("100.50"), Some("100.50")));
    assert_eq!(market["asks"][0]["quantity"], 30);
    // Order views are the owner's only.
    assert_eq!(app.get_as(&format!("/v1/orders/{ann_sell_id}"), &cal_t).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.post_as(&format!("/v1/orders/{ann_sell_id}/cancel"), &cal_t, None).await, StatusCode::NOT_FOUND);

    // Self-trade prevention: Ann's buy at her own offer cancels the offer instead.
    let (_, ann_buy) = order(&app, &ann_t, &asset, "a2", buy("101.00", 10)).await;
    let ann_buy = settled_order(&app, &ann_t, ann_buy["id"].as_str().unwrap()).await;
    assert_eq!(ann_buy["self_trade_cancelled"], json!([ann_sell_id]), "{ann_buy}");
    assert_eq!((ann_buy["state"].as_str(), ann_buy["filled"].as_u64()), (Some("open"), Some(0)));
    let (_, ann_sell) = app.get_as(&format!("/v1/orders/{ann_sell_id}"), &ann_t).await;
    assert_eq!(ann_sell["state"], "cancelled");
    assert!(ann_sell["reason"].as_str().unwrap().contains("self-trade prevention"), "{ann_sell}");
    assert_eq!(posted(&app, &format!("holding:{ann}:{asset}")).await, 70, "the 30 units left came back");

    // A cancel: 202, then the lock returns.
    let (_, ben_high) = order(&app, &ben_t, &asset, "b2", sell("105.00", 10)).await;
    let ben_high_id = ben_high["id"].as_str().unwrap().to_owned();
    settled_order(&app, &ben_t, &ben_high_id).await;
    let response =
        app.client.post(app.url(&format!("/v1/orders/{ben_high_id}/cancel"))).bearer_auth(&ben_t).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    platform_tests::eventually("the cancel reached the book", || async {
        app.platform.trading().get(&ben_high_id).await.unwrap().unwrap().state == OrderState::Cancelled
    })
    .await;
    assert_eq!(app.post_as(&format!("/v1/orders/{ben_high_id}/cancel"), &ben_t, None).await, StatusCode::CONFLICT);
    assert_eq!(posted(&app, &format!("holding:{ben}:{asset}")).await, 150);

    // Every fill is confirmed to both sides, by email with a contract note.
    platform_tests::eventually("the trade confirmations were sent", || async {
        app.mail().iter().filter(|m| m.subject.starts_with("Trade confirmation")).count() == 4
    })
    .await;
    let (_, notices) = app.get_as("/v1/me/notices", &cal_t).await;
    let confirmation =
        notices["items"].as_array().unwrap().iter().find(|n| n["kind"] == "trade_confirmed").unwrap().clone();
    let pdf = app
        .client
        .get(app.url(&format!("/v1/me/notices/{}/pdf", confirmation["id"].as_str().unwrap())))
        .bearer_auth(&cal_t)
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), StatusCode::OK);
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF"));

    // The close: what is open expires, holds and locks return, no order is taken after.
    // (The clock moves two hours: the books are read from the platform from here on.)
    let ledger = app.platform.ledger();
    let ann_deposit = Account::id_of(Kind::Deposit, &ann, SGD);
    assert!(ledger.account(&ann_deposit).await.unwrap().unwrap().debits_pending > 0, "Ann's buy holds cash");
    let today = shared::domain::market::trading_day(app.platform.clock.now());
    app.clock.set(shared::domain::market::Rules::default().close_of(today) + TimeDelta::seconds(1));
    let trading = app.platform.trading();
    assert_eq!(trading.close_due().await.unwrap(), std::slice::from_ref(&asset));
    platform_tests::eventually("the close ran", || async {
        app.platform.trading().market(&asset).await.unwrap().0.closed_day == Some(today)
    })
    .await;
    let ann_buy = trading.get(ann_buy["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((ann_buy.state, ann_buy.reason.as_deref()), (OrderState::Expired, Some("expired at the close")));
    assert_eq!(ledger.account(&ann_deposit).await.unwrap().unwrap().debits_pending, 0, "the hold returned");
    assert_eq!(trading.close_due().await.unwrap(), Vec::<String>::new(), "a day closes once");
    let late = trading.place(&ben, &asset, "late", &Placement { side: Side::Sell, price: 10_000, quantity: 10 }).await;
    assert!(matches!(late, Err(TradingError::Closed)), "{late:?}");

    // Conservation: units across holdings, cash across deposits and the fee account.
    let mut held = 0;
    for user in [&ann, &ben, &cal] {
        held += posted(&app, &Account::id_of(Kind::Holding, user, &asset)).await;
        assert_eq!(posted(&app, &Account::id_of(Kind::OrderLock, user, &asset)).await, 0);
        assert_eq!(posted(&app, &Account::id_of(Kind::OrderLock, user, SGD)).await, 0);
    }
    assert_eq!(held, 300, "every unit issued is in a holding");
    assert_eq!(posted(&app, &format!("fees:{asset}:SGD")).await, 3_222, "10.05 + 6.06 from each side");

    // That night: the three books agree, and no order lock is open.
    wait_for_chain(&app.platform).await;
    app.clock.advance(TimeDelta::hours(5));
    let run = app.platform.reconciler().run(app.platform.clock.now()).await.unwrap();
    assert_eq!((run.verdict, run.breaks), (RunVerdict::Reconciled, 0), "{run:?}");
    assert!(app.platform.order_locks().open_at(app.platform.clock.now()).await.unwrap().is_empty());
}

async fn operators_halt_and_resume_a_market_under_maker_checker(app: TestApp) {
    let (_, asset, holders) = issued(&app, &[("ann", 100)]).await;
    let ann_t = &holders[0].1;
    let (_, maker) = app.operator("maker@example.sg", &["deal"]).await;
    let (_, checker) = app.operator("checker@example.sg", &["deal"]).await;
    let halt = format!("/v1/admin/markets/{asset}/halt");
    assert_eq!(app.post_json_as(&halt, ann_t, json!({"reason": "x"})).await.0, StatusCode::FORBIDDEN);
    let (status, problem) = app.post_json_as(&halt, &maker, json!({"reason": " "})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")));
    let (status, request) = app.post_json_as(&halt, &maker, json!({"reason": "valuation under review"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &maker, None).await, StatusCode::FORBIDDEN, "no self-approval");
    let (status, market) = app.get_as(&format!("/v1/markets/{asset}"), ann_t).await;
    assert_eq!((status, market["status"].as_str()), (StatusCode::OK, Some("open")), "not halted before approval");
    assert_eq!(app.post_as(&approve, &checker, None).await, StatusCode::OK);
    let (_, market) = app.get_as(&format!("/v1/markets/{asset}"), ann_t).await;
    assert_eq!(
        (market["status"].as_str(), market["halt_reason"].as_str()),
        (Some("halted"), Some("valuation under review"))
    );
    let sell = json!({"side": "sell", "price": "100.00", "quantity": 10});
    let (status, problem) = order(&app, ann_t, &asset, "h1", sell.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    let (status, request) = app.post_json_as(&format!("/v1/admin/markets/{asset}/resume"), &maker, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &checker, None).await, StatusCode::OK);
    assert_eq!(order(&app, ann_t, &asset, "h2", sell).await.0, StatusCode::CREATED);

    // New rules: a tick of 0.05 and lots of 10, approved by the checker.
    let rules = json!({"opens": "09:00:00", "closes": "17:00:00", "tick_cents": 5, "lot_units": 10, "band_bps": 500, "fee_bps": 10});
    let (status, request) = app.put_json_as(&format!("/v1/admin/markets/{asset}/rules"), &maker, rules).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &checker, None).await, StatusCode::OK);
    let (status, problem) =
        order(&app, ann_t, &asset, "h3", json!({"side": "sell", "price": "100.01", "quantity": 10})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("price")));
    let (status, problem) =
        order(&app, ann_t, &asset, "h4", json!({"side": "sell", "price": "100.05", "quantity": 15})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("quantity")));

    // Every step is in the audit log.
    let (_, admin) = app.operator("root@example.sg", &["super-admin"]).await;
    let (status, audit) = app.get_as("/v1/admin/audit?limit=100", &admin).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let text = audit.to_string();
    for action in ["halt-market", "resume-market", "set-market-rules"] {
        assert!(text.contains(action), "{action} audited: {text}");
    }
}

async fn many_investors_placing_and_cancelling_at_once_never_oversell_or_overspend(app: TestApp) {
    let (_, asset, holders) = issued(&app, &[("s1", 50), ("s2", 50), ("s3", 50)]).await;
    let mut buyers = Vec::new();
    for n in 0..3 {
        let (id, token) = app.accredited_investor(&format!("b{n}@example.sg")).await;
        app.deposit(&token, "2000.00").await;
        buyers.push(id);
    }
    let sellers: Vec<String> = holders.into_iter().map(|(id, _)| id).collect();
    let trading = std::sync::Arc::new(app.platform.trading());
    // Each seller tries to sell 20 units six times (120 of 50) and each buyer to buy
    // 10 units at 100.00 six times (6,012 of 2,000.00), all at once, cancelling every third.
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (owner, side, price)) in sellers
        .iter()
        .map(|s| (s.clone(), Side::Sell, 10_100))
        .chain(buyers.iter().map(|b| (b.clone(), Side::Buy, 10_000)))
        .enumerate()
    {
        for k in 0..6 {
            let (trading, asset, owner) = (trading.clone(), asset.clone(), owner.clone());
            let quantity = if side == Side::Sell { 20 } else { 10 };
            tasks.spawn(async move {
                let placed =
                    trading.place(&owner, &asset, &format!("k{n}-{k}"), &Placement { side, price, quantity }).await;
                match placed {
                    Ok(order) if k % 3 == 0 => {
                        trading.cancel(&owner, &order.id).await.unwrap();
                    }
                    Ok(_) | Err(TradingError::Uncovered { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            });
        }
    }
    while let Some(outcome) = tasks.join_next().await {
        outcome.unwrap();
    }
    // The matcher catches up. No account went below zero; what is locked and held is
    // exactly what the open orders say, within what each investor had.
    let users: Vec<&String> = sellers.iter().chain(&buyers).collect();
    platform_tests::eventually("every order reached the book", || async {
        let mut all = true;
        for user in &users {
            let orders = trading.orders_of(user, 100, None).await.unwrap().0;
            all &= orders.iter().all(|o| o.seq.is_some() || o.state != OrderState::Open);
        }
        all
    })
    .await;
    let ledger = app.platform.ledger();
    for user in &users {
        let orders = trading.orders_of(user, 100, None).await.unwrap().0;
        assert!(!orders.is_empty(), "{user} placed orders");
        let open: Vec<_> = orders.iter().filter(|o| o.state == OrderState::Open).collect();
        let deposit = ledger.account(&Account::id_of(Kind::Deposit, user, SGD)).await.unwrap().unwrap();
        assert!(deposit.available() >= 0, "{deposit:?}");
        if sellers.contains(user) {
            let locked: u64 = open.iter().map(|o| o.remaining()).sum();
            let lock = posted(&app, &Account::id_of(Kind::OrderLock, user, &asset)).await;
            let holding = posted(&app, &Account::id_of(Kind::Holding, user, &asset)).await;
            assert_eq!((i128::from(locked), holding + lock), (lock, 50), "{user}");
            assert!(holding >= 0 && locked <= 50, "{user}: {locked} locked");
        } else {
            let held: u64 = open.iter().filter_map(|o| o.held.map(|h| h.amount)).sum();
            assert_eq!(u128::from(held), deposit.debits_pending, "{user}");
            assert!(held <= 200_000, "{user}: {held} held of 2,000.00");
        }
    }
    let today = shared::domain::market::trading_day(app.platform.clock.now());
    app.clock.set(shared::domain::market::Rules::default().close_of(today) + TimeDelta::seconds(1));
    trading.close_due().await.unwrap();
    platform_tests::eventually("the close returned every lock and hold", || async {
        let mut clear = true;
        for user in sellers.iter().chain(&buyers) {
            let ledger = app.platform.ledger();
            let deposit = ledger.account(&Account::id_of(Kind::Deposit, user, SGD)).await.unwrap().unwrap();
            clear &= deposit.debits_pending == 0;
            if let Some(lock) = ledger.account(&Account::id_of(Kind::OrderLock, user, &asset)).await.unwrap() {
                clear &= lock.posted_balance() == 0;
            }
        }
        clear
    })
    .await;
    for seller in &sellers {
        assert_eq!(posted(&app, &Account::id_of(Kind::Holding, seller, &asset)).await, 50);
    }
}

async fn a_trade_in_flight_at_the_cut_off_is_a_timing_difference_and_a_lock_counts_its_units_not_yet_traded(
    mut app: TestApp,
) {
    use shared::adapters::partners::{Fault, FaultKind};
    use shared::app::consumer::pump_once;
    use shared::domain::reconcile::{Pair, RowVerdict, RuleId};
    use shared::ports::queue::QueueName;

    let (_, asset, holders) = issued(&app, &[("ann", 100), ("ben", 10)]).await;
    let (ann, ben) = (holders[0].0.clone(), holders[1].0.clone());
    wait_for_chain(&app.platform).await;
    app.running.stop_workers().await;
    let (sims, mirror, trading) =
        (app.platform.simulators.clone().unwrap(), app.platform.chain_mirror(), app.platform.trading());
    let sell =
        trading.place(&ann, &asset, "s", &Placement { side: Side::Sell, price: 10_000, quantity: 10 }).await.unwrap();
    trading.place(&ben, &asset, "b", &Placement { side: Side::Buy, price: 10_000, quantity: 4 }).await.unwrap();
    let handler = matching::handler(&app.platform);
    while pump_once(app.platform.queue.as_ref(), QueueName::Matching, handler.as_ref(), Duration::ZERO).await.unwrap()
        > 0
    {}
    assert_eq!(trading.get(&sell.id).await.unwrap().unwrap().filled, 4);

    // The chain takes the lock and the trade's first legs; the Custody refuses its first
    // booking, so every later leg waits.
    sims.custody.inject(Fault { kind: FaultKind::Fail, times: 1, delay_ms: 0 });
    assert!(mirror.drain(100).await.unwrap().stopped, "the Custody refused a trade leg once");
    app.clock.advance(TimeDelta::seconds(1));
    let reconciler = app.platform.reconciler();
    let run = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((run.verdict, run.breaks), (RunVerdict::ReconciledWithPending, 0), "{run:?}");
    let (rows, _) = reconciler.rows(&run.id, 100, None).await.unwrap();
    let custody: Vec<(String, RowVerdict, Vec<RuleId>, String)> = rows
        .iter()
        .filter(|r| r.pair == Pair::LedgerCustody)
        .map(|r| (r.account.clone(), r.verdict, r.rules.clone(), r.difference.clone()))
        .collect();
    // Ann's holding at the Custody still has the 6 units locked and the 4 traded; Ben's
    // has not received them; the cash has not moved there either.
    let ann_holding = custody.iter().find(|r| r.0 == format!("holding:{ann}:{asset}")).expect("Ann's holding differs");
    assert_eq!((ann_holding.1, ann_holding.3.as_str()), (RowVerdict::Timing, "10"), "{custody:?}");
    assert!(ann_holding.2.contains(&RuleId::DabsLockedInOrder) && ann_holding.2.contains(&RuleId::TradeInFlight));
    let ben_holding = custody.iter().find(|r| r.0 == format!("holding:{ben}:{asset}")).expect("Ben's holding differs");
    assert_eq!(
        (ben_holding.1, ben_holding.2.clone(), ben_holding.3.as_str()),
        (RowVerdict::Timing, vec![RuleId::TradeInFlight], "-4")
    );
    let ben_cash = custody.iter().find(|r| r.0 == format!("deposit:{ben}:SGD")).expect("Ben's cash differs");
    assert_eq!(
        (ben_cash.1, ben_cash.3.as_str()),
        (RowVerdict::Timing, "40080"),
        "400.00 and the 0.80 fee: {custody:?}"
    );

    // Delivered: only the lock's 6 units remain a timing difference, until the close.
    assert!(!mirror.drain(100).await.unwrap().stopped);
    app.clock.advance(TimeDelta::seconds(1));
    let run = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((run.verdict, run.breaks, run.timing), (RunVerdict::ReconciledWithPending, 0, 1), "{run:?}");
    let today = shared::domain::market::trading_day(app.platform.clock.now());
    app.clock.set(shared::domain::market::Rules::default().close_of(today) + TimeDelta::seconds(1));
    trading.close_due().await.unwrap();
    while pump_once(app.platform.queue.as_ref(), QueueName::Matching, handler.as_ref(), Duration::ZERO).await.unwrap()
        > 0
    {}
    assert!(!mirror.drain(100).await.unwrap().stopped);
    let run = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((run.verdict, run.breaks), (RunVerdict::Reconciled, 0), "{run:?}");
}
