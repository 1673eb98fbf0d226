//! The audit log's chains, one per actor per day, and the daily anchors that seal them.

use chrono::TimeDelta;
use platform_tests::{TestApp, on_both_stores};
use serde_json::json;
use shared::app::audit::{AuditLog, Event, SETTLED_AFTER};
use shared::ports::envelope::Sealing;
use shared::ports::store::{Condition, Key, Query, Range, StoreError, Write};

on_both_stores!(
    appends_of_two_actors_never_contend_and_one_actors_appends_chain,
    the_daily_anchor_shows_a_removed_chain_a_forged_seal_and_a_removed_anchor,
);

fn event(actor: &str, action: &str) -> Event {
    Event::applied(actor, action, "-", "test")
}

/// A flood of one caller's entries cannot hold up another's: their appends touch
/// different chain heads. Two appends of one actor prepared together conflict: the
/// chain admits one at a time.
async fn appends_of_two_actors_never_contend_and_one_actors_appends_chain(app: TestApp) {
    let log = AuditLog::new(app.platform.store.clone(), app.platform.clock.clone());
    let store = app.platform.store.as_ref();
    let (flood, approval) = (log.prepare(&event("usr_flood", "users.list")).await.unwrap(), {
        log.prepare(&event("usr_checker", "change-request.approve.grant-role")).await.unwrap()
    });
    store.transact(flood).await.unwrap();
    store.transact(approval).await.expect("another actor's append is not held up");

    let (first, second) =
        (log.prepare(&event("usr_flood", "a")).await.unwrap(), log.prepare(&event("usr_flood", "b")).await.unwrap());
    store.transact(first).await.unwrap();
    assert!(matches!(store.transact(second).await, Err(StoreError::ConditionFailed { index: 0, .. })));
    log.append(event("usr_flood", "b")).await.unwrap();

    let (entries, _) = log.page(10, None).await.unwrap();
    let floods: Vec<(u64, &str)> =
        entries.iter().filter(|e| e.actor == "usr_flood").map(|e| (e.seq, e.action.as_str())).collect();
    assert_eq!(floods, vec![(3, "b"), (2, "a"), (1, "users.list")], "newest first, chained per actor");
    let today = app.platform.clock.now().date_naive();
    assert!(log.verify_day(app.platform.audit_keyring.as_ref(), today).await.unwrap().is_empty());
}

/// Without an anchor, someone with table access could remove a whole chain (an actor's
/// day) and every remaining chain would still verify. The anchor seals the day's heads
/// under a key the table's administrators do not hold.
async fn the_daily_anchor_shows_a_removed_chain_a_forged_seal_and_a_removed_anchor(app: TestApp) {
    let (store, keyring) = (app.platform.store.clone(), app.platform.audit_keyring.clone());
    let log = AuditLog::new(store.clone(), app.platform.clock.clone());
    let day = app.platform.clock.now().date_naive();
    for actor in ["usr_a", "usr_b", "usr_b"] {
        log.append(event(actor, "deal.update")).await.unwrap();
    }
    let checked = log.check(keyring.as_ref()).await.unwrap();
    assert!(checked.anchored.is_empty() && checked.breaks.is_empty(), "the day has not ended: {checked:?}");

    // The day ended and settled: the check anchors it, and it verifies.
    let next = day.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    app.clock.set(next + SETTLED_AFTER);
    let checked = log.check(keyring.as_ref()).await.unwrap();
    assert_eq!((checked.anchored.as_slice(), checked.breaks.len()), (&[day][..], 0), "{checked:?}");
    // The anchored day is closed: an append stamped within it is refused.
    let late = AuditLog::new(
        store.clone(),
        std::sync::Arc::new(shared::adapters::clock::ManualClock::at(next - TimeDelta::seconds(1))),
    );
    let writes = late.prepare(&event("usr_late", "x")).await.unwrap();
    assert!(matches!(store.transact(writes).await, Err(StoreError::ConditionFailed { index: 2, .. })));

    // usr_b's whole chain of the day is removed: every chain left verifies; the anchor not.
    let chain = format!("AUDIT#{day}#usr_b");
    let mut removed = vec![Write::delete(Key::new(&chain, "HEAD"), Condition::Exists)];
    let entries = store.query(&Query::partition(&chain).range(Range::Prefix("E#".into()))).await.unwrap();
    removed.extend(entries.items.into_iter().map(|item| Write::delete(item.key, Condition::Exists)));
    store.transact(removed).await.unwrap();
    let breaks = log.verify_day(keyring.as_ref(), day).await.unwrap();
    assert_eq!(breaks, vec![format!("{day}: the chain heads differ from the anchor")]);

    // A new anchor sealed with any other key does not open.
    let anchor_key = Key::new("AUDIT-ANCHOR", day.to_string());
    let item = store.get(&anchor_key).await.unwrap().unwrap();
    let mut anchor: serde_json::Value = item.decode().unwrap();
    let context = [("purpose".to_owned(), "audit-anchor".to_owned()), ("day".to_owned(), day.to_string())].into();
    let forged = app.platform.keyring.encrypt(b"whatever the heads now are", &context).await.unwrap();
    anchor["sealed"] = json!(forged);
    let forged = shared::ports::store::Item::new(anchor_key.clone(), &anchor).unwrap();
    store.put(forged, Condition::Exists).await.unwrap();
    let breaks = log.verify_day(keyring.as_ref(), day).await.unwrap();
    assert_eq!(breaks, vec![format!("{day}: the anchor's seal does not open")]);

    // The anchor removed: reported, and never sealed again over the rewritten chains. The
    // scheduled entry point reports the same and counts it.
    store.transact(vec![Write::delete(anchor_key, Condition::Exists)]).await.unwrap();
    log.append(event("usr_a", "day two")).await.unwrap();
    app.clock.set(next + TimeDelta::days(1) + SETTLED_AFTER);
    let checked = reconcile::scheduled(&app.platform, json!({"check_audit": true})).await.unwrap();
    let anchored: Vec<String> = serde_json::from_value(checked["anchored"].clone()).unwrap();
    assert_eq!(anchored, vec![day.succ_opt().unwrap().to_string()], "{checked}");
    assert_eq!(checked["breaks"], json!([format!("{day}: the day ended and has no anchor")]), "{checked}");
}
