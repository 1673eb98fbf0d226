//! Helpers for the black-box tests: start the whole platform, read what it mailed.

pub mod iam;
pub mod settle;

use std::path::PathBuf;
use std::sync::Arc;

use shared::Platform;
use shared::adapters::clock::ManualClock;

pub struct TestApp {
    pub base: String,
    pub platform: Platform,
    pub clock: Arc<ManualClock>,
    pub running: local::Running,
    pub client: reqwest::Client,
    dir: tempfile::TempDir,
}

/// Starts the platform as the local runner does, on a free port, with an in-memory store
/// and a clock the test moves.
pub async fn spawn_app() -> TestApp {
    spawn(false).await
}

/// [`spawn_app`] with the platform changed by `adjust` before it starts (an adapter
/// wrapped to watch what it is asked).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Platform)) -> TestApp {
    spawn_adjusted(false, adjust).await
}

/// The same, with the store on DynamoDB in the emulator (`DABS_AWS_ENDPOINT`, set by
/// `./infra/test.sh`); [`on_both_stores`] skips it without one.
pub async fn spawn_app_on_dynamodb() -> TestApp {
    spawn(true).await
}

async fn spawn(dynamodb: bool) -> TestApp {
    spawn_adjusted(dynamodb, |_| {}).await
}

async fn spawn_adjusted(dynamodb: bool, adjust: impl FnOnce(&mut Platform)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at("2026-11-25T06:00:00Z".parse().unwrap()));
    let mut platform = Platform::ephemeral(dir.path(), clock.clone()).unwrap();
    if dynamodb {
        use shared::adapters::aws::{DynamoStore, emulator_config};
        let endpoint = std::env::var("DABS_AWS_ENDPOINT")
            .expect("DABS_AWS_ENDPOINT is not set: run ./infra/test.sh, which starts the AWS emulator and sets it");
        let client = aws_sdk_dynamodb::Client::new(&emulator_config(&endpoint).await.unwrap());
        let table = format!("app-{}", ulid::Ulid::new().to_string().to_lowercase());
        DynamoStore::create_table(&client, &table).await.unwrap();
        platform = platform.with_store(Arc::new(DynamoStore::new(client, table, clock.clone()))).unwrap();
    }
    adjust(&mut platform);
    let running = local::start(platform.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    TestApp { base: format!("http://{}", running.addr), platform, clock, running, client: reqwest::Client::new(), dir }
}

/// An email as a reader sees it.
#[derive(Debug, Clone)]
pub struct SentMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// The one-click unsubscribe URL (`List-Unsubscribe`), if any.
    pub unsubscribe: Option<String>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` as JSON; returns the status and the parsed answer.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Every email sent so far, oldest first.
    pub fn mail(&self) -> Vec<SentMail> {
        let Ok(entries) = std::fs::read_dir(self.mail_dir()) else { return Vec::new() };
        let mut paths: Vec<PathBuf> =
            entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect();
        paths.sort();
        paths.iter().map(|p| parse_mail(&std::fs::read_to_string(p).unwrap())).collect()
    }
}

/// The emulator's whole state (`/moto-api/data.json`). The emulator builds it while other
/// tests change IAM users and keys, and now and then fails to (a 500 naming an object it
/// cannot serialise): such an answer is asked again, up to ten times.
pub async fn emulator_data(endpoint: &str) -> serde_json::Value {
    let url = format!("{endpoint}/moto-api/data.json");
    for _ in 0..10 {
        let response = reqwest::get(&url).await.expect("the emulator answers");
        if response.status().is_success() {
            return response.json().await.expect("the emulator's data is JSON");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the emulator never answered {url} with its data")
}

pub(crate) fn parse_mail(raw: &str) -> SentMail {
    use mail_parser::MessageParser;
    let message = MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
    let to = message.to().and_then(|to| to.first()).and_then(|a| a.address()).unwrap_or_default().to_owned();
    let subject = message.subject().unwrap_or_default().to_owned();
    let html = message.body_html(0).filter(|_| message.html_body_count() > 0).map(|h| h.into_owned());
    let unsubscribe = message
        .header_raw("List-Unsubscribe")
        .and_then(|h| h.trim().strip_prefix('<')?.split('>').next())
        .map(str::to_owned);
    SentMail { to, subject, text: message.body_text(0).unwrap_or_default().into_owned(), html, unsubscribe }
}

impl TestApp {
    /// Signs up, verifies the address and logs in; returns the token answer.
    pub async fn logged_in(&self, email: &str, password: &str) -> serde_json::Value {
        let (status, _) = self.post("/v1/auth/signup", serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED);
        let text = self.mail().last().expect("a verification email").text.clone();
        let code = text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a code").to_owned();
        let (status, _) = self
            .post("/v1/auth/email/verify", serde_json::json!({"email": email, "code": code, "password": password}))
            .await;
        assert_eq!(status, reqwest::StatusCode::OK);
        self.login(email, password).await
    }

    pub async fn login(&self, email: &str, password: &str) -> serde_json::Value {
        let (status, tokens) =
            self.post("/v1/auth/login", serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{tokens}");
        tokens
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, path: &str, access_token: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self.client.get(self.url(path)).bearer_auth(access_token).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POST without a body, with a bearer token.
    pub async fn post_as(
        &self,
        path: &str,
        access_token: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::StatusCode {
        let mut request = self.client.post(self.url(path)).bearer_auth(access_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().status()
    }
}

/// The password of every user the helpers make.
pub const PASSWORD: &str = "operator passphrase 2026";

impl TestApp {
    /// Creates a verified user with `roles` and a confirmed TOTP second factor, logs in
    /// through both steps, and answers (user id, access token).
    pub async fn operator(&self, email: &str, roles: &[&str]) -> (String, String) {
        let (user_id, tokens) = self.operator_tokens(email, roles).await;
        (user_id, tokens["access_token"].as_str().unwrap().to_owned())
    }

    /// [`TestApp::operator`], answering the whole token answer (refresh token included).
    pub async fn operator_tokens(&self, email: &str, roles: &[&str]) -> (String, serde_json::Value) {
        self.user_tokens(email, roles, 2).await
    }

    /// An investor at verification level 3 (accredited), logged in with the second factor;
    /// answers (user id, access token).
    pub async fn accredited_investor(&self, email: &str) -> (String, String) {
        let (user_id, tokens) = self.user_tokens(email, &[], 3).await;
        (user_id, tokens["access_token"].as_str().unwrap().to_owned())
    }

    /// A verified user with `roles` at `level` and a confirmed TOTP second factor, logged
    /// in through both steps; answers (user id, the token answer).
    pub async fn user_tokens(&self, email: &str, roles: &[&str], level: u8) -> (String, serde_json::Value) {
        let user = self.platform.accounts().create_verified(email, PASSWORD, roles, level).await.unwrap();
        let secret = self.platform.second_factor().enroll_confirmed(&user.id).await.unwrap();
        (user.id, self.sign_in(email, &secret).await)
    }

    /// Logs a user made by [`TestApp::user_tokens`] in again through both steps, with the
    /// TOTP `secret` (base32) of their second factor; answers the token answer.
    pub async fn sign_in(&self, email: &str, secret: &str) -> serde_json::Value {
        use shared::domain::totp;
        let password = PASSWORD;
        let (_, challenge) =
            self.post("/v1/auth/login", serde_json::json!({"email": email, "password": password})).await;
        let secret = totp::from_base32(secret).unwrap();
        let code = format!("{:06}", totp::code_for_step(&secret, totp::step_at(self.platform.clock.now().timestamp())));
        let (status, tokens) = self
            .post("/v1/auth/login/mfa", serde_json::json!({"challenge": challenge["challenge"], "code": code}))
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{tokens}");
        tokens
    }

    /// POST with a bearer token and a JSON body; answers status and body.
    pub async fn post_json_as(
        &self,
        path: &str,
        access_token: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self.client.post(self.url(path)).bearer_auth(access_token).json(&body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Runs each named `async fn(TestApp)` once on the embedded store and once on DynamoDB:
/// `embedded::<name>` and `dynamodb::<name>` in the test output.
#[macro_export]
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::spawn_app().await).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let test = concat!("dynamodb::", stringify!($case));
                    if shared::adapters::aws::emulator_endpoint("DABS_AWS_ENDPOINT", test).is_none() {
                        return;
                    }
                    super::$case($crate::spawn_app_on_dynamodb().await).await;
                }
            )*
        }
    };
}

impl TestApp {
    /// A level-2 investor (second factor proved at login) whose deposit account received
    /// `amount` through the bank simulator; answers (user id, access token).
    pub async fn funded_investor(&self, email: &str, amount: &str) -> (String, String) {
        let (user_id, token) = self.operator(email, &[]).await;
        if amount != "0" {
            let (status, answer) = self.deposit(&token, amount).await;
            assert_eq!(status, reqwest::StatusCode::CREATED, "{answer}");
            assert!(answer["webhooks"].as_array().unwrap().iter().all(|w| w["status"] == 200), "{answer}");
        }
        (user_id, token)
    }

    /// Makes the bank simulator send the webhooks of a deposit to the caller's virtual account.
    pub async fn deposit(&self, access_token: &str, amount: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let (_, accounts) = self.get_as("/v1/accounts/me", access_token).await;
        let va = accounts["virtual_account"].as_str().expect("a virtual account").to_owned();
        self.post("/sim/bank/deposits", serde_json::json!({"virtual_account": va, "amount": amount})).await
    }

    /// The caller's SGD balances: (posted, available).
    pub async fn sgd(&self, access_token: &str) -> (String, String) {
        let (status, accounts) = self.get_as("/v1/accounts/me", access_token).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{accounts}");
        let sgd = accounts["accounts"].as_array().unwrap().iter().find(|a| a["asset"] == "SGD").unwrap().clone();
        (sgd["posted"].as_str().unwrap().to_owned(), sgd["available"].as_str().unwrap().to_owned())
    }

    /// POSTs a withdrawal with an idempotency key.
    pub async fn withdraw(
        &self,
        access_token: &str,
        key: &str,
        amount: &str,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self
            .client
            .post(self.url("/v1/accounts/me/withdrawals"))
            .bearer_auth(access_token)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"amount": amount}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Polls `check` every 20 ms until it answers true; panics after 20 s with `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What [`TestApp::approved_issuer`] sets up.
pub struct IssuerSetup {
    pub issuer_id: String,
    /// An issuer user acting for the issuer.
    pub owner: String,
    /// Two deal operators: one proposes, the other approves.
    pub maker: String,
    pub checker: String,
}

impl TestApp {
    /// An issuer onboarded by its user and approved by two deal operators, through the API.
    pub async fn approved_issuer(&self, uen: &str) -> IssuerSetup {
        use reqwest::StatusCode;
        use serde_json::json;
        let (_, tokens) = self.operator_tokens(&format!("owner-{uen}@example.sg").to_lowercase(), &["issuer"]).await;
        let onboarding = json!({
            "company_name": format!("Issuer {uen} Pte Ltd"),
            "uen": uen,
            "contact": {"name": "Lim Mei Ling", "email": "mei.ling@example.sg", "phone": "+65 6000 0000"},
            "bank": {"bank_name": "OCBC", "account_name": "Issuer", "account_number": "501-234567-001"},
        });
        let (status, issuer) =
            self.post_json_as("/v1/issuers", tokens["access_token"].as_str().unwrap(), onboarding).await;
        assert_eq!(status, StatusCode::CREATED, "{issuer}");
        let issuer_id = issuer["id"].as_str().unwrap().to_owned();
        let (_, refreshed) = self.post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
        let (_, maker) = self.operator(&format!("maker-{uen}@example.sg").to_lowercase(), &["deal"]).await;
        let (_, checker) = self.operator(&format!("checker-{uen}@example.sg").to_lowercase(), &["deal"]).await;
        let (status, request) = self
            .post_json_as(&format!("/v1/admin/issuers/{issuer_id}/decision"), &maker, json!({"decision": "approve"}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{request}");
        let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
        assert_eq!(self.post_as(&approve, &checker, None).await, StatusCode::OK);
        IssuerSetup { issuer_id, owner: refreshed["access_token"].as_str().unwrap().to_owned(), maker, checker }
    }

    /// PUT with a bearer token and a JSON body; answers status and body.
    pub async fn put_json_as(
        &self,
        path: &str,
        access_token: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self.client.put(self.url(path)).bearer_auth(access_token).json(&body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// PATCH with a bearer token and a JSON body; answers status and body.
    pub async fn patch_json_as(
        &self,
        path: &str,
        access_token: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self.client.patch(self.url(path)).bearer_auth(access_token).json(&body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl TestApp {
    /// A published deal of a new approved issuer, opened by its window (the clock moves an
    /// hour, so tokens made before it have expired); 10,000 units at 100.00, 10 to 1,000
    /// per investor, closing in a week. Answers the deal id.
    pub async fn open_deal(&self, uen: &str) -> String {
        use reqwest::StatusCode;
        use serde_json::json;
        let s = self.approved_issuer(uen).await;
        let now = self.platform.clock.now();
        let deal = json!({
            "issuer_id": s.issuer_id,
            "building": {"name": "Harbour Point", "address": "2 Harbour Rd", "type": "office", "valuation": "80000000.00"},
            "supply": 10000, "unit_price": "100.00", "min_units": 10, "max_units": 1000,
            "opens_at": (now + chrono::TimeDelta::hours(1)).to_rfc3339(),
            "closes_at": (now + chrono::TimeDelta::days(7)).to_rfc3339(),
        });
        let (status, deal) = self.post_json_as("/v1/admin/deals", &s.maker, deal).await;
        assert_eq!(status, StatusCode::CREATED, "{deal}");
        let id = deal["id"].as_str().unwrap().to_owned();
        let (_, request) = self.post_json_as(&format!("/v1/admin/deals/{id}/publish"), &s.maker, json!({})).await;
        let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
        assert_eq!(self.post_as(&approve, &s.checker, None).await, StatusCode::OK);
        self.clock.advance(chrono::TimeDelta::hours(1));
        let deals = self.platform.deals();
        eventually("the deal opened", || async {
            let deal = deals.get(&id).await.unwrap().unwrap();
            deal.state == shared::domain::deal::DealState::Open
        })
        .await;
        id
    }

    /// Proposes the change at `path` as `maker` (202) and has a second operator with
    /// `checker_roles` approve it; answers the approved request.
    pub async fn proposed_and_approved(
        &self,
        path: &str,
        maker: &str,
        checker_roles: &[&str],
        body: serde_json::Value,
    ) -> serde_json::Value {
        use reqwest::StatusCode;
        let response = self.client.post(self.url(path)).bearer_auth(maker).json(&body).send().await.unwrap();
        let status = response.status();
        let request: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(status, StatusCode::ACCEPTED, "{request}");
        let id = request["id"].as_str().unwrap();
        let (_, checker) = self.operator(&format!("checker-{id}@example.sg").to_lowercase(), checker_roles).await;
        let (status, approved) = self
            .post_json_as(&format!("/v1/admin/change-requests/{id}/approve"), &checker, serde_json::json!({}))
            .await;
        assert_eq!((status, approved["status"].as_str()), (StatusCode::OK, Some("approved")), "{approved}");
        approved
    }

    /// Closes an open deal early: `finance` proposes, a second finance operator approves.
    pub async fn close_early(&self, deal: &str, finance: &str) {
        let path = format!("/v1/admin/deals/{deal}/close");
        self.proposed_and_approved(&path, finance, &["finance"], serde_json::json!({})).await;
    }

    /// POSTs a subscription with an idempotency key.
    pub async fn subscribe(
        &self,
        token: &str,
        deal: &str,
        key: &str,
        units: u64,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self
            .client
            .post(self.url(&format!("/v1/deals/{deal}/subscriptions")))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"units": units}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// A log writer that keeps everything written to it, for tests that search the logs.
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Makes this process log everything, at TRACE, into a capture (once per test binary).
    pub fn everything() -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        captured
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
