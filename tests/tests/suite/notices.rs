//! Notices end to end: every money event of an offering tells each investor once, by
//! email and in their inbox, with its PDF; on both stores, and with the relay and the
//! notify queue delivering twice.

use std::collections::BTreeMap;

use platform_tests::{TestApp, eventually, on_both_stores};
use reqwest::StatusCode;
use serde_json::Value;
use shared::app::consumer::pump_once;
use shared::app::notices::{NotifyMessage, Preferences};
use shared::ports::queue::QueueName;

on_both_stores!(
    an_offering_tells_each_investor_once_what_became_of_their_money,
    a_deposit_notice_is_in_the_inbox_with_its_pdf_and_its_email_and_no_one_else_sees_it,
    a_crash_between_sending_and_recording_resends_at_most_once,
    an_address_the_mail_service_refuses_is_recorded_once_and_not_tried_again,
    monthly_statements_go_to_every_investor_with_activity_or_holdings_once,
);

/// The kinds in the investor's inbox, with how many of each.
async fn inbox_kinds(app: &TestApp, token: &str) -> (BTreeMap<String, usize>, Value) {
    let (status, inbox) = app.get_as("/v1/me/notices?limit=200", token).await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    let mut kinds = BTreeMap::new();
    for item in inbox["items"].as_array().unwrap() {
        *kinds.entry(item["kind"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    (kinds, inbox)
}

fn expected(kinds: &[&str]) -> BTreeMap<String, usize> {
    kinds.iter().map(|k| ((*k).to_owned(), 1)).collect()
}

/// Emails to `address`, by subject.
fn mail_to(app: &TestApp, address: &str) -> Vec<String> {
    app.mail().into_iter().filter(|m| m.to == address).map(|m| m.subject).collect()
}

async fn an_offering_tells_each_investor_once_what_became_of_their_money(app: TestApp) {
    // Ann asked for offering news before the deal opened; Ben did not.
    let accounts = app.platform.accounts();
    let second_factor = app.platform.second_factor();
    let mut secrets = BTreeMap::new();
    for name in ["ann", "ben", "cal"] {
        let email = format!("{name}@example.sg");
        let user = accounts.create_verified(&email, platform_tests::PASSWORD, &[], 3).await.unwrap();
        secrets.insert(name, (user.id.clone(), second_factor.enroll_confirmed(&user.id).await.unwrap()));
    }
    let notices = app.platform.notices();
    notices.set_preferences(&secrets["ann"].0, Preferences { offering_news: true }).await.unwrap();
    let deal = app.open_deal("201912345K").await;

    let mut tokens = BTreeMap::new();
    for (name, units) in [("ann", 100u64), ("ben", 250), ("cal", 40)] {
        let tokens_answer = app.sign_in(&format!("{name}@example.sg"), &secrets[name].1).await;
        let token = tokens_answer["access_token"].as_str().unwrap().to_owned();
        let (status, deposit) = app.deposit(&token, "100000.00").await;
        assert_eq!(status, StatusCode::CREATED, "{deposit}");
        let (status, sub) = app.subscribe(&token, &deal, "k1", units).await;
        assert_eq!(status, StatusCode::CREATED, "{sub}");
        if name == "cal" {
            let cancel = format!("/v1/subscriptions/{}/cancel", sub["id"].as_str().unwrap());
            assert_eq!(app.post_as(&cancel, &token, None).await, StatusCode::OK);
        }
        tokens.insert(name, token);
    }
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;

    let want = BTreeMap::from([
        (
            "ann",
            expected(&[
                "deposit_credited",
                "deal_published",
                "subscription_received",
                "allocation_result",
                "dabs_issued",
            ]),
        ),
        ("ben", expected(&["deposit_credited", "subscription_received", "allocation_result", "dabs_issued"])),
        ("cal", expected(&["deposit_credited", "subscription_received", "subscription_cancelled"])),
    ]);
    for (name, kinds) in &want {
        eventually(&format!("{name}'s notices arrived"), || async {
            inbox_kinds(&app, &tokens[name]).await.0 == *kinds
        })
        .await;
        let address = format!("{name}@example.sg");
        eventually(&format!("{name}'s emails were sent"), || async {
            mail_to(&app, &address).len() == kinds.values().sum::<usize>()
        })
        .await;
    }

    // Everything delivered twice: the relay's messages again for every notice, and the
    // offering news' fan-out again, as a redelivering queue would.
    let mut app = app;
    app.running.stop_workers().await;
    let mut again = Vec::new();
    for name in want.keys() {
        let (_, inbox) = inbox_kinds(&app, &tokens[name]).await;
        for item in inbox["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap().to_owned();
            again.push(NotifyMessage::Deliver { id: id.clone() }.body());
            again.push(NotifyMessage::Deliver { id }.body());
        }
    }
    let news = shared::app::notices::id_of(&format!("deal:{deal}:open"));
    again.push(NotifyMessage::FanOut { id: news, after: None }.body());
    app.platform.queue.send(QueueName::Notify, again).await.unwrap();
    assert_eq!(notices.relay(100).await.unwrap(), 0, "nothing is waiting: the relay sends nothing again");
    let handler = notify::handler(&app.platform, &notify::Templates::new());
    let wait = std::time::Duration::from_millis(100);
    while pump_once(app.platform.queue.as_ref(), QueueName::Notify, handler.as_ref(), wait).await.unwrap() > 0 {}
    for (name, kinds) in &want {
        assert_eq!(inbox_kinds(&app, &tokens[name]).await.0, *kinds, "{name}: each notice once");
        let subjects = mail_to(&app, &format!("{name}@example.sg"));
        assert_eq!(subjects.len(), kinds.values().sum::<usize>(), "{name}: one email per notice: {subjects:?}");
    }
    // The news carries a one-click unsubscribe; the money notices do not.
    let ann_mail: Vec<_> = app.mail().into_iter().filter(|m| m.to == "ann@example.sg").collect();
    let news: Vec<_> = ann_mail.iter().filter_map(|m| m.unsubscribe.clone()).collect();
    assert_eq!(news.len(), 1, "only the offering news: {ann_mail:?}");
    let path = &news[0][news[0].find("/v1/").unwrap()..];
    let forged = path.replace("token=", "token=someone-else");
    let one_click = |path: String| {
        app.client
            .post(app.url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
    };
    assert_eq!(one_click(forged).await.unwrap().status(), StatusCode::NOT_FOUND, "a forged token");
    assert_eq!(notices.preferences(&secrets["ann"].0).await.unwrap(), Preferences { offering_news: true });
    assert_eq!(one_click(path.to_owned()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(notices.preferences(&secrets["ann"].0).await.unwrap(), Preferences { offering_news: false });

    let (_, inbox) = inbox_kinds(&app, &tokens["ann"]).await;
    assert_eq!(inbox["unread"], 5, "{inbox}");
    let allocation = inbox["items"].as_array().unwrap().iter().find(|i| i["kind"] == "allocation_result").unwrap();
    let (status, view) =
        app.get_as(&format!("/v1/me/notices/{}", allocation["id"].as_str().unwrap()), &tokens["ann"]).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!((view["facts"]["requested"].as_u64(), view["facts"]["allocated"].as_u64()), (Some(100), Some(100)));
    assert_eq!(view["facts"]["ratio"], "1.000000000000000", "{view}");
}

async fn a_deposit_notice_is_in_the_inbox_with_its_pdf_and_its_email_and_no_one_else_sees_it(app: TestApp) {
    let (_, token) = app.funded_investor("dora@example.sg", "250.00").await;
    let (_, other) = app.funded_investor("eve@example.sg", "0").await;
    eventually("the deposit notice is in the inbox", || async {
        app.get_as("/v1/me/notices", &token).await.1["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let (_, inbox) = app.get_as("/v1/me/notices", &token).await;
    assert_eq!((inbox["unread"].as_u64(), inbox["items"][0]["kind"].as_str()), (Some(1), Some("deposit_credited")));
    assert_eq!(inbox["items"][0]["subject"], "S$250.00 credited to your deposit account", "{inbox}");
    let id = inbox["items"][0]["id"].as_str().unwrap().to_owned();

    // The PDF, rendered from the stored facts, names the amount.
    let response =
        app.client.get(app.url(&format!("/v1/me/notices/{id}/pdf"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    let pdf = response.bytes().await.unwrap();
    let text = pdf_text(&pdf);
    assert!(text.contains("Deposit advice") && text.contains("S$250.00"), "{text}");

    // The email: plain text and HTML.
    let mail: Vec<_> = app.mail().into_iter().filter(|m| m.to == "dora@example.sg").collect();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].text.contains("S$250.00"), "{}", mail[0].text);
    assert!(mail[0].html.as_deref().is_some_and(|h| h.contains("<strong>") || h.contains("S$250.00")), "{mail:?}");

    // Another investor: not found, whatever the route.
    for path in [format!("/v1/me/notices/{id}"), format!("/v1/me/notices/{id}/pdf")] {
        assert_eq!(app.get_as(&path, &other).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(app.post_as(&format!("/v1/me/notices/{id}/read"), &other, None).await, StatusCode::NOT_FOUND);
    let (_, theirs) = app.get_as("/v1/me/notices", &other).await;
    assert_eq!(theirs["items"].as_array().map(Vec::len), Some(0), "{theirs}");

    // Read once: the count falls once.
    for _ in 0..2 {
        assert_eq!(app.post_as(&format!("/v1/me/notices/{id}/read"), &token, None).await, StatusCode::OK);
    }
    let (_, inbox) = app.get_as("/v1/me/notices", &token).await;
    assert_eq!((inbox["unread"].as_u64(), inbox["items"][0]["read"].as_bool()), (Some(0), Some(true)));

    // Preferences: off until turned on; unknown fields refused.
    let (_, prefs) = app.get_as("/v1/me/notification-preferences", &token).await;
    assert_eq!(prefs["offering_news"], false);
    let put =
        |body: Value| app.client.put(app.url("/v1/me/notification-preferences")).bearer_auth(&token).json(&body).send();
    assert_eq!(put(serde_json::json!({"offering_news": true})).await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.get_as("/v1/me/notification-preferences", &token).await.1["offering_news"], true);
    let refused = put(serde_json::json!({"offering_news": true, "sms": true})).await.unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
}

/// The text `pdftotext` reads from a PDF.
fn pdf_text(pdf: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("pdftotext")
        .args(["-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pdftotext (poppler-utils; ./infra/test.sh installs it)");
    child.stdin.take().unwrap().write_all(pdf).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// A notice for `user_id`, written as a flow writes one (in a transaction of its own here).
async fn written_notice(app: &TestApp, user_id: &str, origin: &str) -> String {
    use shared::app::notices::{self, Audience, Notice};
    let at = app.platform.clock.now();
    let notice = Notice::DepositCredited { amount: 12_345, bank_reference: origin.into(), at };
    let write = notices::write(origin, Audience::Investor(user_id.to_owned()), notice, at).unwrap();
    app.platform.store.transact(vec![write]).await.unwrap();
    notices::id_of(origin)
}

async fn a_crash_between_sending_and_recording_resends_at_most_once(mut app: TestApp) {
    use shared::app::notices::{Claim, Delivery};
    app.running.stop_workers().await;
    let (user_id, _) = app.operator("fay@example.sg", &[]).await;
    let notices = app.platform.notices();
    let notifier = notify::notifier(&app.platform, &notify::Templates::new());
    let sent = || app.mail().into_iter().filter(|m| m.to == "fay@example.sg").count();

    // One crash: the claim was made (the email may have gone), nothing recorded. The
    // redelivery sends once more and records it.
    let once = written_notice(&app, &user_id, "crash-once").await;
    assert!(matches!(notices.claim(&once).await.unwrap(), Claim::Send(_)), "the crashed attempt's claim");
    notifier.handle_one(NotifyMessage::Deliver { id: once.clone() }).await.unwrap();
    assert_eq!(sent(), 1, "the one resend");
    assert!(matches!(notices.get(&once).await.unwrap().unwrap().0.delivery, Delivery::Sent { .. }));
    notifier.handle_one(NotifyMessage::Deliver { id: once.clone() }).await.unwrap();
    assert_eq!(sent(), 1, "sent is sent: a later delivery sends nothing");

    // Two crashes: the third delivery sends nothing, marks it failed and fails for good
    // (to the dead-letter queue, for an operator): never an endless resend.
    let twice = written_notice(&app, &user_id, "crash-twice").await;
    for _ in 0..2 {
        assert!(matches!(notices.claim(&twice).await.unwrap(), Claim::Send(_)));
    }
    let error = notifier.handle_one(NotifyMessage::Deliver { id: twice.clone() }).await.unwrap_err();
    assert!(shared::app::failure::Permanence::is_permanent(&error), "{error}");
    assert_eq!(sent(), 1, "no third send");
    let (noted, _) = notices.get(&twice).await.unwrap().unwrap();
    assert!(matches!(noted.delivery, Delivery::Failed { .. }), "{noted:?}");
    // In the inbox either way, counted unread once each.
    let inbox = notices.inbox(&user_id, 10, None).await.unwrap();
    assert_eq!((inbox.notices.len(), inbox.unread), (2, 2));
}

/// A mail service that refuses every address, as SES refuses a suppressed one.
struct Refusing(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl shared::ports::Mailer for Refusing {
    async fn send(&self, _: &shared::ports::mailer::Email) -> Result<String, shared::ports::mailer::MailError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(shared::ports::mailer::MailError::Refused("the address is on the suppression list".into()))
    }
}

async fn an_address_the_mail_service_refuses_is_recorded_once_and_not_tried_again(mut app: TestApp) {
    use shared::app::notices::Delivery;
    app.running.stop_workers().await;
    let (user_id, _) = app.operator("gus@example.sg", &[]).await;
    let refusing = std::sync::Arc::new(Refusing(Default::default()));
    let mut platform = app.platform.clone();
    platform.mailer = refusing.clone();
    let notifier = notify::notifier(&platform, &notify::Templates::new());
    let id = written_notice(&app, &user_id, "suppressed").await;
    for _ in 0..3 {
        notifier.handle_one(NotifyMessage::Deliver { id: id.clone() }).await.unwrap();
    }
    assert_eq!(refusing.0.load(std::sync::atomic::Ordering::SeqCst), 1, "asked once, not again");
    let (noted, _) = app.platform.notices().get(&id).await.unwrap().unwrap();
    match noted.delivery {
        Delivery::Failed { reason, .. } => assert!(reason.contains("suppression list"), "{reason}"),
        other => panic!("recorded as failed: {other:?}"),
    }
}

async fn monthly_statements_go_to_every_investor_with_activity_or_holdings_once(app: TestApp) {
    use shared::app::notices::Notice;
    let (hal, _) = app.funded_investor("hal@example.sg", "1500.00").await;
    let (idle, _) = app.funded_investor("ida@example.sg", "0").await;
    let (operator, _) = app.operator("ops@example.sg", &["finance"]).await;
    eventually("the deposit's notice arrived", || async {
        app.platform.notices().inbox(&hal, 10, None).await.unwrap().notices.len() == 1
    })
    .await;
    // 1 December, 08:00 in Singapore: November's statements are due; asked twice.
    app.clock.set("2026-12-01T00:00:00Z".parse().unwrap());
    for _ in 0..2 {
        notify::statements_due(&app.platform).await.unwrap();
    }
    let statements = |user: String| {
        let notices = app.platform.notices();
        async move {
            let inbox = notices.inbox(&user, 50, None).await.unwrap();
            inbox.notices.into_iter().filter(|n| n.notice.kind() == "monthly_statement").collect::<Vec<_>>()
        }
    };
    eventually("hal's statement arrived", || async { statements(hal.clone()).await.len() == 1 }).await;
    match &statements(hal.clone()).await[0].notice {
        Notice::MonthlyStatement { month, opening_balance, closing_balance, movements, holdings, .. } => {
            assert_eq!((month.as_str(), *opening_balance, *closing_balance), ("2026-11", 0, 150_000));
            assert_eq!(movements.len(), 1, "{movements:?}");
            assert_eq!((movements[0].description.as_str(), movements[0].amount), ("Deposit", 150_000));
            assert!(holdings.is_empty());
        }
        other => panic!("a statement: {other:?}"),
    }
    let statement_mail =
        || app.mail().into_iter().filter(|m| m.subject == "Your statement for 2026-11").collect::<Vec<_>>();
    eventually("hal's statement was emailed", || async { !statement_mail().is_empty() }).await;
    let mail = statement_mail();
    assert_eq!(mail.iter().map(|m| m.to.as_str()).collect::<Vec<_>>(), ["hal@example.sg"], "once, to hal alone");
    assert!(statements(idle).await.is_empty(), "no activity, no holdings: no statement");
    assert!(statements(operator).await.is_empty(), "operators get no statement");
}
