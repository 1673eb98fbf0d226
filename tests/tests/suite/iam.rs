//! Every function's AWS path, run under exactly the policy and environment
//! `template.yaml` gives it, against an emulator that enforces IAM
//! (`platform_tests::iam`): a whole offering from the close to issuance, each step by
//! the function that owns it; the routes of each HTTP function; and what a missing
//! permission does. What the emulator cannot evaluate is in
//! `docs/decisions/0011-permissions-proven-under-iam.md`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use platform_tests::iam::Stack;
use serde_json::{Value, json};
use shared::Platform;
use shared::adapters::clock::SystemClock;
use shared::app::consumer::BatchHandler;
use shared::domain::deal::DealState;
use shared::ports::Chain;
use shared::ports::queue::{Message, QueueName};
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
    let response = app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A signed partner callback (`bank-…` or `custody-…` headers).
async fn signed(app: &axum::Router, path: &str, partner: &str, secret: &[u8], body: &Value) -> (StatusCode, Value) {
    let body = body.to_string();
    let now = chrono::Utc::now().timestamp();
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header(format!("{partner}-timestamp"), now.to_string())
        .header(format!("{partner}-signature"), shared::domain::webhook::sign(secret, now, body.as_bytes()))
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The stack, with the partner simulators served on loopback and the template's partner
/// URLs pointing at them.
struct Deployed {
    stack: Stack,
    admin: Platform,
    simulators: shared::Simulators,
    _dir: tempfile::TempDir,
}

/// The stack for the calling test; `None` (the test is skipped) without the emulator.
async fn deployed() -> Option<Deployed> {
    use shared::adapters::partners::{bank_router, chain_router, custody_router};
    let test = std::thread::current().name().unwrap_or("an IAM test").to_owned();
    let mut stack = Stack::up(&test).await?;
    let dir = tempfile::tempdir().unwrap();
    let simulated = Platform::ephemeral(dir.path(), Arc::new(SystemClock)).unwrap();
    let simulators = simulated.simulators.clone().unwrap();
    let router = chain_router(simulators.chain.clone())
        .merge(bank_router(simulators.bank.clone()))
        .nest("/custody", custody_router(simulators.custody.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    stack.partner("BankApiUrl", base.clone());
    stack.partner("ChainApiUrl", base.clone());
    stack.partner("CustodyApiUrl", format!("{base}/custody"));
    let admin = stack.admin_platform().await;
    Some(Deployed { stack, admin, simulators, _dir: dir })
}

const PASSWORD: &str = "correct horse battery staple";

/// Signs up, verifies the address from the email SES sent, and logs in, all through the
/// auth function; answers the access token.
async fn investor_through_auth(stack: &Stack, auth: &Platform, email: &str) -> String {
    let app = auth::app(auth);
    let (status, body) =
        call(&app, "POST", "/v1/auth/signup", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mail = stack.mail_to(email).await;
    let text = &mail.last().expect("the verification email, sent through SES").text;
    let code = text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a code");
    let (status, body) = call(
        &app,
        "POST",
        "/v1/auth/email/verify",
        None,
        Some(json!({"email": email, "code": code, "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, tokens) =
        call(&app, "POST", "/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// A user with `roles` at `level` and a TOTP second factor (made by the test's own hands),
/// logged in through both steps of the auth function; answers (user id, access token).
async fn with_second_factor(d: &Deployed, auth: &Platform, email: &str, roles: &[&str], level: u8) -> (String, String) {
    use shared::domain::totp;
    let user = d.admin.accounts().create_verified(email, PASSWORD, roles, level).await.unwrap();
    let secret = d.admin.second_factor().enroll_confirmed(&user.id).await.unwrap();
    let app = auth::app(auth);
    let (status, challenge) =
        call(&app, "POST", "/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(status, StatusCode::OK, "{challenge}");
    let secret = totp::from_base32(&secret).unwrap();
    let code = format!("{:06}", totp::code_for_step(&secret, totp::step_at(chrono::Utc::now().timestamp())));
    let body = json!({"challenge": challenge["challenge"], "code": code});
    let (status, tokens) = call(&app, "POST", "/v1/auth/login/mfa", None, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    (user.id, tokens["access_token"].as_str().unwrap().to_owned())
}

/// Works `queue` with `handler` until it is empty, as Lambda's event source would: the
/// admin receives, the function handles, handled messages are deleted.
async fn work(admin: &Platform, queue: QueueName, handler: &dyn BatchHandler) -> usize {
    let mut handled = 0;
    loop {
        let received = admin.queue.receive(queue, 10, Duration::from_millis(200)).await.unwrap();
        if received.is_empty() {
            return handled;
        }
        let messages: Vec<Message> = received.iter().map(|r| r.message.clone()).collect();
        let failed = handler.handle(&messages).await;
        assert!(failed.is_empty(), "{queue:?}: messages failed under the function's policy: {failed:?}");
        let receipts: Vec<String> = received.into_iter().map(|r| r.receipt).collect();
        admin.queue.complete(queue, &receipts).await.unwrap();
        handled += messages.len();
    }
}

#[tokio::test]
async fn auth_signs_up_verifies_logs_in_with_a_second_factor_and_publishes_its_keys_under_its_own_policy() {
    let Some(d) = deployed().await else { return };
    let auth = d.stack.function("AuthFunction").await;
    let app = auth::app(&auth);
    let token = investor_through_auth(&d.stack, &auth, "first@example.sg").await;
    let (status, me) = call(&app, "GET", "/v1/me", Some(&token), None).await;
    assert_eq!((status, me["level"].as_u64()), (StatusCode::OK, Some(1)), "{me}");
    let (status, jwks) = call(&app, "GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!((status, jwks["keys"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{jwks}");
    // The second factor is sealed under the data key: enrolment and the login's check.
    let (status, enrolment) = call(&app, "POST", "/v1/auth/mfa/totp", Some(&token), None).await;
    assert_eq!(status, StatusCode::CREATED, "{enrolment}");
    let (_, operator) = with_second_factor(&d, &auth, "ops@example.sg", &["finance"], 2).await;
    let (status, sessions) = call(&app, "GET", "/v1/auth/sessions", Some(&operator), None).await;
    assert_eq!(status, StatusCode::OK, "{sessions}");
    let (status, _) = call(&app, "POST", "/v1/auth/logout", Some(&operator), None).await;
    assert!(status.is_success(), "{status}");
}

#[tokio::test]
async fn offering_answers_an_authenticated_route_under_its_own_policy_with_no_token_key() {
    // GIVEN a token the auth function issued
    let Some(d) = deployed().await else { return };
    let auth = d.stack.function("AuthFunction").await;
    let token = investor_through_auth(&d.stack, &auth, "investor@example.sg").await;
    // WHEN the offering function checks it: its role may not use the token key
    let offering = d.stack.function("OfferingFunction").await;
    let app = offering::app(&offering);
    // THEN it answers, from the public keys in the table
    for path in ["/v1/me/subscriptions", "/v1/me/holdings", "/v1/me/allocations"] {
        let (status, body) = call(&app, "GET", path, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, _) = call(&app, "GET", "/v1/me/subscriptions", Some("not-a-token"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // AND it could not unseal the signing keys if it tried
    let sessions = offering.sessions(Default::default()).await;
    assert!(sessions.is_err(), "only the auth function may unseal the signing keys");
}

#[tokio::test]
async fn accounts_serves_deposits_from_a_signed_webhook_and_pays_out_at_the_bank_under_its_own_policy() {
    let Some(d) = deployed().await else { return };
    let auth = d.stack.function("AuthFunction").await;
    let (_, token) = with_second_factor(&d, &auth, "saver@example.sg", &[], 2).await;
    let accounts = d.stack.function("AccountsFunction").await;
    let app = accounts::app(&accounts);
    let (status, mine) = call(&app, "GET", "/v1/accounts/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let virtual_account = mine["virtual_account"].as_str().expect("a virtual account").to_owned();

    // The bank's webhook, signed with the secret the function reads from Secrets Manager.
    let secret = b"BankSecret-webhook-secret";
    for (kind, event_id) in [("deposit.received", "ev-1"), ("deposit.confirmed", "ev-2")] {
        let event = json!({"type": kind, "event_id": event_id, "deposit_id": "dep-1",
            "virtual_account": virtual_account, "amount": "250.00"});
        let (status, answer) = signed(&app, "/v1/webhooks/bank", "bank", secret, &event).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let forged = json!({"type": "deposit.received", "event_id": "ev-3", "deposit_id": "dep-2",
        "virtual_account": virtual_account, "amount": "1.00"});
    assert_eq!(signed(&app, "/v1/webhooks/bank", "bank", b"not the secret", &forged).await.0, StatusCode::UNAUTHORIZED);

    // A withdrawal: the payout goes to the bank with the key from the same secret.
    let request = Request::post("/v1/accounts/me/withdrawals")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", "w-1")
        .body(Body::from(json!({"amount": "100.00"}).to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
    let (_, mine) = call(&app, "GET", "/v1/accounts/me", Some(&token), None).await;
    let sgd = mine["accounts"].as_array().unwrap().iter().find(|a| a["asset"] == "SGD").unwrap().clone();
    assert_eq!(sgd["available"], "150.00", "{mine}");
    let payouts = d.simulators.bank.payouts();
    assert_eq!(payouts.len(), 1, "the bank received the payout once");

    // The deposit's notice, under the notify function's policy: the stream's wake relays
    // it to the queue, the consumer opens the investor's sealed address and sends it by
    // SES, and the investor reads it and its PDF in the inbox.
    let notify = d.stack.function("NotifyFunction").await;
    let templates = notify::Templates::new();
    let stream_record = json!({"Records": [{"eventSource": "aws:dynamodb", "eventName": "INSERT"}]});
    notify::woken(&notify, stream_record).await.unwrap();
    assert_eq!(work(&d.admin, QueueName::Notify, notify::handler(&notify, &templates).as_ref()).await, 1);
    let mail = d.stack.mail_to("saver@example.sg").await;
    let advice = mail.iter().find(|m| m.subject.contains("credited")).expect("the deposit's email, through SES");
    assert!(advice.text.contains("S$250.00"), "{}", advice.text);
    let inbox_app = notify::app(&notify, &templates);
    let (status, inbox) = call(&inbox_app, "GET", "/v1/me/notices", Some(&token), None).await;
    assert_eq!((status, inbox["unread"].as_u64()), (StatusCode::OK, Some(1)), "{inbox}");
    let id = inbox["items"][0]["id"].as_str().unwrap().to_owned();
    let response = inbox_app
        .clone()
        .oneshot(
            Request::get(format!("/v1/me/notices/{id}/pdf"))
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, read) = call(&inbox_app, "POST", &format!("/v1/me/notices/{id}/read"), Some(&token), None).await;
    assert_eq!((status, read["read"].as_bool()), (StatusCode::OK, Some(true)), "{read}");
    let (status, _) =
        call(&inbox_app, "PUT", "/v1/me/notification-preferences", Some(&token), Some(json!({"offering_news": true})))
            .await;
    assert_eq!(status, StatusCode::OK);
    // The monthly schedule: the statements notice, relayed, fanned out over the investors
    // (reading their ledger accounts) under the same policy.
    notify::woken(&notify, json!({"statements": true})).await.unwrap();
    assert!(work(&d.admin, QueueName::Notify, notify::handler(&notify, &templates).as_ref()).await >= 1);
}

/// The whole offering after an early close: one finance operator proposes it (offering),
/// a second approves it (auth), the sweep starts the allocation, allocation works its
/// queue (allocation), settlement moves the money and issues through the Custody and the
/// chain (settlement), each under its own policy.
#[tokio::test]
async fn an_offering_closes_allocates_settles_and_issues_with_each_step_under_its_functions_policy() {
    let Some(d) = deployed().await else { return };
    let deal = local::bench::write_deal(&d.admin, "iam-deal", DealState::Open, 500, 100).await.unwrap();
    let investors = platform_tests::settle::subscribed_investors(&d.admin, &deal.id, 0..3).await;
    assert_eq!(investors.len(), 3);
    // One more left pending, as if its process died before placing the hold: the start
    // of the allocation rejects it, which ends its marker and the investor's lock.
    let pending = pending_subscription(&d.admin, &deal.id, "inv-pending").await;

    let auth = d.stack.function("AuthFunction").await;
    let (_, finance) = with_second_factor(&d, &auth, "finance@example.sg", &["finance"], 2).await;
    let offering = d.stack.function("OfferingFunction").await;
    let (status, request) =
        call(&offering::app(&offering), "POST", &format!("/v1/admin/deals/{}/close", deal.id), Some(&finance), None)
            .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let (_, checker) = with_second_factor(&d, &auth, "finance-2@example.sg", &["finance"], 2).await;
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    let (status, approved) = call(&auth::app(&auth), "POST", &approve, Some(&checker), None).await;
    assert_eq!(status, StatusCode::OK, "{approved}");

    let allocation = d.stack.function("AllocationFunction").await;
    let settlement = d.stack.function("SettlementFunction").await;
    let (allocate, settle) = (allocation::handler(&allocation), settlement::handler(&settlement));
    let sweeper = settlement::Sweeper::new(&settlement);
    let deals = d.admin.deals();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while deals.get(&deal.id).await.unwrap().unwrap().state != DealState::Issued {
        assert!(
            std::time::Instant::now() < deadline,
            "stuck at {:?}",
            deals.get(&deal.id).await.unwrap().unwrap().state
        );
        let worked = work(&d.admin, QueueName::Allocation, allocate.as_ref()).await
            + work(&d.admin, QueueName::Settlement, settle.as_ref()).await
            + sweeper.drain_outbox().await.unwrap();
        if worked == 0 {
            sweeper.run_once().await.unwrap();
        }
    }
    let run = d.admin.allocation_records().run(&deal.id).await.unwrap().unwrap();
    assert_eq!(run.allocated(), 500, "the whole supply is allocated");
    let subscriptions = d.admin.subscriptions(Arc::new(d.admin.deposit_accounts()));
    let status = subscriptions.get(&pending).await.unwrap().unwrap().status;
    assert_eq!(status, shared::app::subscriptions::SubscriptionStatus::Rejected);
    assert!(d.simulators.chain.height().await.unwrap() > 0, "the chain recorded the issuance");

    // Finance reads the settlement from the settlement function (audited: a table write).
    let app = settlement::app(&settlement);
    let (status, view) =
        call(&app, "GET", &format!("/v1/admin/deals/{}/settlement", deal.id), Some(&finance), None).await;
    assert_eq!((status, view["settlement"]["phase"].as_str()), (StatusCode::OK, Some("issued")), "{view}");
}

/// A subscription written as its first transaction leaves it (pending, no hold yet).
async fn pending_subscription(admin: &Platform, deal: &str, investor: &str) -> String {
    use shared::app::subscriptions::{Subscription, SubscriptionStatus, sub_item};
    admin.deposit_accounts().account_for(investor).await.unwrap();
    let now = chrono::Utc::now();
    let sub = Subscription {
        id: format!("sub-{investor}"),
        deal_id: deal.to_owned(),
        investor_id: investor.to_owned(),
        units: 10,
        amount: 1_000,
        status: SubscriptionStatus::Pending,
        reason: None,
        created_at: now,
        updated_at: now,
    };
    admin.store.put(sub_item(&sub).unwrap(), shared::ports::store::Condition::NotExists).await.unwrap();
    sub.id
}

#[tokio::test]
async fn the_custody_callback_verifies_with_the_secret_from_secrets_manager_under_the_settlement_policy() {
    let Some(d) = deployed().await else { return };
    let settlement = d.stack.function("SettlementFunction").await;
    let app = settlement::app(&settlement);
    let event = json!({"type": "distribution_decided", "event_id": "ev-1", "reference": "no-such-distribution",
        "decision": {"status": "approved"}});
    let (status, answer) =
        signed(&app, "/v1/webhooks/custody", "custody", b"CustodySecret-webhook-secret", &event).await;
    // Verified (not 401), then found to name nothing this platform sent.
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, _) = signed(&app, "/v1/webhooks/custody", "custody", b"another secret", &event).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn finance_asks_for_a_reconciliation_and_the_reconcile_function_runs_it_under_its_own_policy() {
    let Some(d) = deployed().await else { return };
    let auth = d.stack.function("AuthFunction").await;
    let (_, finance) = with_second_factor(&d, &auth, "recon@example.sg", &["finance"], 2).await;
    let reconcile = d.stack.function("ReconcileFunction").await;
    let app = reconcile::app(&reconcile);
    let cut_off = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let (status, queued) =
        call(&app, "POST", "/v1/admin/reconciliation/runs", Some(&finance), Some(json!({"cut_off": cut_off}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(work(&d.admin, QueueName::Reconcile, reconcile::handler(&reconcile).as_ref()).await, 1);
    let (status, runs) = call(&app, "GET", "/v1/admin/reconciliation/runs", Some(&finance), None).await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    assert_eq!(runs["items"][0]["verdict"], "reconciled", "{runs}");
    // The schedule's event, as EventBridge Scheduler sends it.
    let scheduled = reconcile::scheduled(&reconcile, json!({"cut_off": cut_off})).await;
    assert!(scheduled.is_ok(), "{scheduled:?}");
}

/// Myinfo onboarding under the myinfo function's own policy, against the Singpass
/// simulator on loopback (as Singpass, it reads the platform's published keys): the
/// client keys and the person key made and opened by KMS under their encryption contexts,
/// the assessment, the opt-in, break-glass, the re-wrap pages on the queue with KMS
/// `ReEncrypt`, the client keys' rotation and the erasure.
#[tokio::test]
async fn myinfo_onboards_opts_in_reveals_rewraps_and_erases_under_its_own_policy() {
    use shared::adapters::partners::SingpassSimulator;
    use shared::app::myinfo::keys::PublishedKeys;
    let Some(mut d) = deployed().await else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/sim/singpass", listener.local_addr().unwrap());
    d.stack.partner("SingpassIssuer", issuer.clone());
    let myinfo = d.stack.function("MyinfoFunction").await;
    let config = myinfo.singpass.config().clone();
    let published = PublishedKeys { store: d.admin.store.clone(), clock: Arc::new(SystemClock) };
    let simulator = SingpassSimulator::new(
        issuer,
        config.client_id.clone(),
        config.redirect_uri.clone(),
        Arc::new(published),
        Arc::new(SystemClock),
    )
    .unwrap();
    let router = Arc::new(simulator).router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let auth = d.stack.function("AuthFunction").await;
    let app = myinfo::app(&myinfo);
    let (user_id, token) = with_second_factor(&d, &auth, "myinfo-iam@example.sg", &[], 2).await;
    let (status, started) = call(&app, "POST", "/v1/myinfo/authorize", Some(&token), Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let url = format!("{}&persona=S9812381D", started["authorize_url"].as_str().unwrap());
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirected = client.get(url).send().await.unwrap();
    assert_eq!(redirected.status(), StatusCode::FOUND);
    let location = redirected.headers()["location"].to_str().unwrap().to_owned();
    let callback = &location[location.find("/v1/myinfo/callback").unwrap()..];
    let (status, assessed) = call(&app, "GET", callback, None, None).await;
    assert_eq!((status, assessed["outcome"].as_str()), (StatusCode::OK, Some("passed")), "{assessed}");
    let body = json!({"notice_version": assessed["notice_version"]});
    let (status, opted) = call(&app, "POST", "/v1/me/accreditation/opt-in", Some(&token), Some(body)).await;
    assert_eq!((status, opted["level"].as_u64()), (StatusCode::OK, Some(3)), "{opted}");
    let (status, jwks) = call(&app, "GET", "/.well-known/myinfo-jwks.json", None, None).await;
    assert_eq!((status, jwks["keys"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));

    let (_, guardian) = with_second_factor(&d, &auth, "dpo-iam@example.sg", &["data-protection"], 2).await;
    let reveal = format!("/v1/admin/users/{user_id}/myinfo/reveal");
    let reason = json!({"reason": "an IAM test reads the record once"});
    let (status, data) = call(&app, "POST", &reveal, Some(&guardian), Some(reason.clone())).await;
    assert_eq!((status, data["person"]["uinfin"]["value"].as_str()), (StatusCode::OK, Some("S9812381D")), "{data}");

    let (_, admin) = with_second_factor(&d, &auth, "keys-iam@example.sg", &["super-admin"], 2).await;
    let (status, job) = call(&app, "POST", "/v1/admin/myinfo/rewrap", Some(&admin), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert!(work(&d.admin, QueueName::Myinfo, myinfo::handler(&myinfo).as_ref()).await >= 1);
    let path = format!("/v1/admin/myinfo/rewrap/{}", job["id"].as_str().unwrap());
    let (_, report) = call(&app, "GET", &path, Some(&admin), None).await;
    assert_eq!((report["rewrapped"].as_u64(), report["finished_at"].is_string()), (Some(1), true), "{report}");
    let rotated = myinfo::woken(&myinfo, json!({"rotate_client_keys": true})).await.unwrap();
    assert_eq!(rotated["client_keys"].as_array().map(Vec::len), Some(2), "{rotated}");

    // A page that can never be read goes to the dead-letter queue at once, sent by the
    // function itself.
    let unreadable = format!("not a re-wrap page {user_id}");
    d.admin.queue.send(QueueName::Myinfo, vec![unreadable.clone()]).await.unwrap();
    let received = d.admin.queue.receive(QueueName::Myinfo, 10, Duration::from_secs(1)).await.unwrap();
    let messages: Vec<Message> = received.iter().map(|r| r.message.clone()).collect();
    assert_eq!(myinfo::handler(&myinfo).handle(&messages).await, Vec::<String>::new(), "none is delivered again");
    let receipts: Vec<String> = received.into_iter().map(|r| r.receipt).collect();
    d.admin.queue.complete(QueueName::Myinfo, &receipts).await.unwrap();
    let dead = d.admin.queue.dead_letters(QueueName::Myinfo, 10).await.unwrap();
    assert!(dead.iter().any(|r| r.message.body == unreadable), "{dead:?}");

    let erase = format!("/v1/admin/users/{user_id}/myinfo/erase");
    let (status, erased) = call(&app, "POST", &erase, Some(&guardian), Some(reason.clone())).await;
    assert_eq!((status, erased["erased"].as_bool()), (StatusCode::OK, Some(true)), "{erased}");
    assert_eq!(call(&app, "POST", &reveal, Some(&guardian), Some(reason)).await.0, StatusCode::NOT_FOUND);
}

/// The secondary market under the matching function's own policy: a market opened on
/// first read, orders locked and held, a cancel, the FIFO queue matched by the function,
/// the trade settled in the ledger, the day closed by its schedule, and a command that
/// can never be read dead-lettered by the function itself.
#[tokio::test]
async fn the_matching_function_takes_orders_matches_them_and_closes_the_day_under_its_own_policy() {
    use shared::adapters::clock::ManualClock;
    use shared::app::trading::OrderState;
    use shared::domain::ledger::{Account, Kind, SGD, Transfer, codes};

    let Some(d) = deployed().await else { return };
    let deal = local::bench::write_deal(&d.admin, "iam-market", DealState::Issued, 1_000, 10_000).await.unwrap();
    let auth = d.stack.function("AuthFunction").await;
    let (seller, seller_token) = with_second_factor(&d, &auth, "seller-iam@example.sg", &[], 3).await;
    let (buyer, buyer_token) = with_second_factor(&d, &auth, "buyer-iam@example.sg", &[], 3).await;
    let ledger = d.admin.ledger();
    let (bank, issuance) =
        (Account::of(Kind::Omnibus, "bank", SGD), Account::of(Kind::Issuance, &deal.asset, &deal.asset));
    ledger.open(bank.clone()).await.unwrap();
    ledger.open(issuance.clone()).await.unwrap();
    for user in [&seller, &buyer] {
        d.admin.deposit_accounts().account_for(user).await.unwrap();
        let deposit = Account::id_of(Kind::Deposit, user, SGD);
        ledger
            .submit(&Transfer::single(format!("fund:{user}"), &bank.id, &deposit, 1_000_000, SGD, codes::DEPOSIT))
            .await
            .unwrap();
    }
    let holding = Account::of(Kind::Holding, &seller, &deal.asset);
    ledger.open(holding.clone()).await.unwrap();
    ledger
        .submit(&Transfer::single("issue:iam", &issuance.id, &holding.id, 100, &deal.asset, codes::ISSUANCE))
        .await
        .unwrap();

    // In session: a Wednesday, 11:00 in Singapore (tokens are checked for expiry only).
    let clock = Arc::new(ManualClock::at("2026-11-25T03:00:00Z".parse().unwrap()));
    let mut matching = d.stack.function("MatchingFunction").await;
    matching.clock = clock.clone();
    let app = matching::app(&matching);
    let asset = deal.asset.clone();
    let (status, market) = call(&app, "GET", &format!("/v1/markets/{asset}"), Some(&buyer_token), None).await;
    assert_eq!((status, market["status"].as_str()), (StatusCode::OK, Some("open")), "{market}");
    let place = |token: &str, key: &str, body: Value| {
        let request = Request::post(format!("/v1/markets/{asset}/orders"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let (status, sell) = place(&seller_token, "s1", json!({"side": "sell", "price": "100.00", "quantity": 10})).await;
    assert_eq!(status, StatusCode::CREATED, "{sell}");
    let (status, other) = place(&seller_token, "s2", json!({"side": "sell", "price": "105.00", "quantity": 5})).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let cancel = format!("/v1/orders/{}/cancel", other["id"].as_str().unwrap());
    assert_eq!(call(&app, "POST", &cancel, Some(&seller_token), None).await.0, StatusCode::ACCEPTED);
    let (status, buy) = place(&buyer_token, "b1", json!({"side": "buy", "price": "100.00", "quantity": 4})).await;
    assert_eq!(status, StatusCode::CREATED, "{buy}");
    let handler = matching::handler(&matching);
    assert_eq!(work(&d.admin, QueueName::Matching, handler.as_ref()).await, 4, "three books and a cancel");
    let (status, trades) = call(&app, "GET", "/v1/me/trades", Some(&buyer_token), None).await;
    assert_eq!((status, trades["items"][0]["quantity"].as_u64()), (StatusCode::OK, Some(4)), "{trades}");
    let trading = d.admin.trading();
    assert_eq!(trading.get(other["id"].as_str().unwrap()).await.unwrap().unwrap().state, OrderState::Cancelled);
    let units = ledger.account(&Account::id_of(Kind::Holding, &buyer, &asset)).await.unwrap().unwrap().posted_balance();
    assert_eq!(units, 4);

    // The schedule closes the day: the rest of the sell expires and its units return.
    clock.set(
        shared::domain::market::Rules::default().close_of(shared::domain::market::trading_day(matching.clock.now()))
            + chrono::TimeDelta::seconds(1),
    );
    let closed = matching::woken(&matching, json!({"close_markets": true})).await.unwrap();
    assert_eq!(closed["closing"], json!([asset.clone()]), "{closed}");
    assert_eq!(work(&d.admin, QueueName::Matching, handler.as_ref()).await, 1);
    assert_eq!(trading.get(sell["id"].as_str().unwrap()).await.unwrap().unwrap().state, OrderState::Expired);
    assert_eq!(ledger.account(&holding.id).await.unwrap().unwrap().posted_balance(), 96);

    // A command that can never be read goes to the dead-letter queue, sent by the function.
    let unreadable = format!("not a command {seller}");
    d.admin.queue.send_fifo(QueueName::Matching, &asset, vec![("junk".into(), unreadable.clone())]).await.unwrap();
    let received = d.admin.queue.receive(QueueName::Matching, 10, Duration::from_secs(1)).await.unwrap();
    let messages: Vec<Message> = received.iter().map(|r| r.message.clone()).collect();
    assert_eq!(handler.handle(&messages).await, Vec::<String>::new(), "none is delivered again");
    let receipts: Vec<String> = received.into_iter().map(|r| r.receipt).collect();
    d.admin.queue.complete(QueueName::Matching, &receipts).await.unwrap();
    let dead = d.admin.queue.dead_letters(QueueName::Matching, 10).await.unwrap();
    assert!(dead.iter().any(|r| r.message.body == unreadable), "{dead:?}");
}

/// `policy` without `action` in any statement.
fn without(mut policy: Value, action: &str) -> Value {
    let statements = policy["Statement"].as_array_mut().unwrap();
    for statement in statements.iter_mut() {
        if let Some(actions) = statement["Action"].as_array_mut() {
            actions.retain(|a| a != action);
        }
    }
    statements.retain(|s| s["Action"] != action && s["Action"].as_array().is_none_or(|a| !a.is_empty()));
    policy
}

/// The tests above pass because the template grants what the code uses, not because the
/// emulator lets anything through: with one needed action taken out, the same path fails.
#[tokio::test]
async fn a_function_missing_one_needed_action_fails_under_iam() {
    let Some(d) = deployed().await else { return };
    let auth = d.stack.function("AuthFunction").await;
    let token = investor_through_auth(&d.stack, &auth, "control@example.sg").await;

    let policy = without(d.stack.policy_of("OfferingFunction").unwrap(), "dynamodb:GetItem");
    let offering = d.stack.function_with("OfferingFunction", Some(policy)).await;
    let (status, _) = call(&offering::app(&offering), "GET", "/v1/me/subscriptions", Some(&token), None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "the public keys cannot be read without GetItem");

    let policy = without(d.stack.policy_of("AuthFunction").unwrap(), "ses:SendEmail");
    let auth = d.stack.function_with("AuthFunction", Some(policy)).await;
    let body = json!({"email": "unmailed@example.sg", "password": PASSWORD});
    let (status, _) = call(&auth::app(&auth), "POST", "/v1/auth/signup", None, Some(body)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "the verification email cannot be sent");

    let deal = local::bench::write_deal(&d.admin, "iam-closed", DealState::Closed, 10, 100).await.unwrap();
    let policy = without(d.stack.policy_of("AllocationFunction").unwrap(), "sqs:SendMessage");
    let allocation = d.stack.function_with("AllocationFunction", Some(policy)).await;
    shared::app::allocation::request_start(d.admin.queue.as_ref(), &deal.id).await.unwrap();
    let received = d.admin.queue.receive(QueueName::Allocation, 10, Duration::from_secs(1)).await.unwrap();
    let messages: Vec<Message> = received.into_iter().map(|r| r.message).collect();
    let failed = allocation::handler(&allocation).handle(&messages).await;
    assert_eq!(failed.len(), 1, "the start cannot hand the settlement on without SendMessage");
}

/// A partner's secret rotated in Secrets Manager, with no redeploy: the running function
/// reads it again when the partner refuses the old key, and accepts callbacks signed with
/// the new secret or (while the partner switches) the previous one.
#[tokio::test]
async fn a_partner_secret_rotated_in_secrets_manager_is_picked_up_without_a_redeploy() {
    use axum::extract::State;
    use axum::http::HeaderMap;

    // A chain that accepts one key at a time.
    let accepted = Arc::new(std::sync::Mutex::new(platform_tests::iam::PARTNER_API_KEY.to_owned()));
    let strict = axum::Router::new()
        .route(
            "/v1/height",
            axum::routing::get(|State(key): State<Arc<std::sync::Mutex<String>>>, headers: HeaderMap| async move {
                let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                if presented == format!("Bearer {}", key.lock().unwrap()) {
                    (StatusCode::OK, axum::Json(json!({"height": 7})))
                } else {
                    (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "unknown key"})))
                }
            }),
        )
        .with_state(accepted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, strict).await.unwrap() });

    let Some(mut d) = deployed().await else { return };
    d.stack.partner("ChainApiUrl", base);
    let settlement = d.stack.function("SettlementFunction").await;
    assert_eq!(settlement.chain.height().await.unwrap(), 7, "the key read at first use");

    // The chain and the platform's secret move to a new key together.
    let secrets = aws_sdk_secretsmanager::Client::new(&d.stack.admin);
    let chain_secret = d.stack.environment_of("SettlementFunction")["CHAIN_SECRET_ARN"].clone();
    let rotated = json!({"api_key": "rotated-key"}).to_string();
    secrets.put_secret_value().secret_id(&chain_secret).secret_string(rotated).send().await.unwrap();
    *accepted.lock().unwrap() = "rotated-key".to_owned();
    assert_eq!(settlement.chain.height().await.unwrap(), 7, "refused once, read again, sent again");

    // The bank switches its webhook secret: both the new and the previous one verify.
    let accounts = d.stack.function("AccountsFunction").await;
    let app = accounts::app(&accounts);
    let event = |id: &str| {
        json!({"type": "deposit.received", "event_id": id, "deposit_id": id, "virtual_account": "880100000000",
            "amount": "1.00"})
    };
    let old = b"BankSecret-webhook-secret";
    // Verified: the body then names an account that does not exist, which is a 4xx of its own.
    let verified = |status: StatusCode| status.is_success() || (status.is_client_error() && status != 401);
    let (status, _) = signed(&app, "/v1/webhooks/bank", "bank", old, &event("e-1")).await;
    assert!(verified(status), "the secret as first read: {status}");
    let bank_secret = d.stack.environment_of("AccountsFunction")["BANK_SECRET_ARN"].clone();
    let switched = json!({"api_key": "k", "webhook_secret": "new-webhook-secret",
        "previous_webhook_secret": "BankSecret-webhook-secret"});
    secrets.put_secret_value().secret_id(&bank_secret).secret_string(switched.to_string()).send().await.unwrap();
    let (status, _) = signed(&app, "/v1/webhooks/bank", "bank", b"new-webhook-secret", &event("e-2")).await;
    assert!(verified(status), "the new secret, read again on the first mismatch: {status}");
    let (status, _) = signed(&app, "/v1/webhooks/bank", "bank", old, &event("e-3")).await;
    assert!(verified(status), "the previous secret, while the bank switches: {status}");
    let (status, _) = signed(&app, "/v1/webhooks/bank", "bank", b"never a secret", &event("e-4")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A message that fails for good (unreadable, or about a deal that does not exist) goes to
/// the dead-letter queue at once, sent by the consumer under its own policy, instead of
/// coming back until the queue's receive limit.
#[tokio::test]
async fn a_message_that_fails_for_good_is_dead_lettered_at_once_under_the_consumers_policy() {
    let Some(d) = deployed().await else { return };
    let nowhere = format!("deal_nowhere_{}", ulid::Ulid::new().to_string().to_lowercase());
    let allocation = d.stack.function("AllocationFunction").await;
    let settlement = d.stack.function("SettlementFunction").await;
    shared::app::allocation::request_start(d.admin.queue.as_ref(), &nowhere).await.unwrap();
    shared::app::settlement::request_start(d.admin.queue.as_ref(), &nowhere).await.unwrap();
    let unreadable = format!("not a message {nowhere}");
    for queue in [QueueName::Allocation, QueueName::Settlement] {
        d.admin.queue.send(queue, vec![unreadable.clone()]).await.unwrap();
        let handler = match queue {
            QueueName::Allocation => allocation::handler(&allocation),
            _ => settlement::handler(&settlement),
        };
        let mut received = Vec::new();
        while received.len() < 2 {
            let batch = d.admin.queue.receive(queue, 10, Duration::from_secs(1)).await.unwrap();
            assert!(!batch.is_empty(), "{queue:?}: the two messages arrive");
            received.extend(batch.into_iter().filter(|r| r.message.body.contains(&nowhere)));
        }
        let messages: Vec<Message> = received.iter().map(|r| r.message.clone()).collect();
        assert_eq!(handler.handle(&messages).await, Vec::<String>::new(), "{queue:?}: none is delivered again");
        let receipts: Vec<String> = received.into_iter().map(|r| r.receipt).collect();
        d.admin.queue.complete(queue, &receipts).await.unwrap();
        let mut dead = Vec::new();
        for _ in 0..10 {
            let letters = d.admin.queue.dead_letters(queue, 10).await.unwrap();
            dead.extend(letters.into_iter().map(|r| r.message.body).filter(|b| b.contains(&nowhere)));
            if dead.len() >= 2 {
                break;
            }
        }
        assert!(dead.contains(&unreadable), "{queue:?}: {dead:?}");
        assert_eq!(dead.len(), 2, "{queue:?}: the start for a missing deal too: {dead:?}");
    }
}

/// A run request that can never run (it does not read) goes to the dead-letter queue at
/// once, sent by the reconcile function under its own policy.
#[tokio::test]
async fn an_unreadable_run_request_is_dead_lettered_under_the_reconcile_functions_policy() {
    let Some(d) = deployed().await else { return };
    let function = d.stack.function("ReconcileFunction").await;
    let unreadable = format!("not a run request {}", ulid::Ulid::new());
    d.admin.queue.send(QueueName::Reconcile, vec![unreadable.clone()]).await.unwrap();
    let mut received = Vec::new();
    while received.is_empty() {
        let batch = d.admin.queue.receive(QueueName::Reconcile, 10, Duration::from_secs(1)).await.unwrap();
        assert!(!batch.is_empty(), "the request arrives");
        received.extend(batch.into_iter().filter(|r| r.message.body == unreadable));
    }
    let messages: Vec<Message> = received.iter().map(|r| r.message.clone()).collect();
    let handler = reconcile::handler(&function);
    assert_eq!(handler.handle(&messages).await, Vec::<String>::new(), "it is not delivered again");
    let receipts: Vec<String> = received.into_iter().map(|r| r.receipt).collect();
    d.admin.queue.complete(QueueName::Reconcile, &receipts).await.unwrap();
    let mut dead = Vec::new();
    for _ in 0..10 {
        let letters = d.admin.queue.dead_letters(QueueName::Reconcile, 10).await.unwrap();
        dead.extend(letters.into_iter().map(|r| r.message.body).filter(|b| *b == unreadable));
        if !dead.is_empty() {
            break;
        }
    }
    assert_eq!(dead, [unreadable]);
}

/// The audit log's check runs in the reconcile function: it anchors a settled day under
/// the audit key its policy grants, and cannot without that grant.
#[tokio::test]
async fn the_audit_log_is_anchored_under_the_reconcile_functions_policy() {
    use shared::adapters::clock::ManualClock;
    use shared::app::audit::{AuditLog, Event};

    let Some(d) = deployed().await else { return };
    // A moment of the latest settled day, whatever the time of day now.
    let yesterday = d.admin.clock.now() - chrono::TimeDelta::days(1) - shared::app::audit::SETTLED_AFTER;
    let then = AuditLog::new(d.admin.store.clone(), Arc::new(ManualClock::at(yesterday)));
    then.append(Event::applied("usr_iam", "iam.test", "-", "an entry of yesterday")).await.unwrap();

    let policy = without(d.stack.policy_of("ReconcileFunction").unwrap(), "kms:GenerateDataKey");
    let unsealed = d.stack.function_with("ReconcileFunction", Some(policy)).await;
    assert!(reconcile::check_audit(&unsealed).await.is_err(), "no anchor without the audit key");

    let function = d.stack.function("ReconcileFunction").await;
    let checked = reconcile::check_audit(&function).await.unwrap();
    assert_eq!(checked.anchored, vec![yesterday.date_naive()], "{checked:?}");
    assert!(checked.breaks.is_empty(), "{checked:?}");
}
