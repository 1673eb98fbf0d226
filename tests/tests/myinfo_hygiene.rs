//! Everything logged during Myinfo onboarding, captured at TRACE level, and every
//! encryption context the keyring is handed (KMS writes contexts to CloudTrail in the
//! clear): no NRIC, name or income may appear in either.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::adapters::partners::singpass_sim::PERSONAS;
use shared::ports::Keyring;
use shared::ports::keyring::{DataKey, EncryptionContext, KeyringError};

/// The platform's keyring, with every context it is handed kept.
struct Watched {
    inner: Arc<dyn Keyring>,
    contexts: Arc<Mutex<Vec<EncryptionContext>>>,
}

impl Watched {
    fn saw(&self, context: &EncryptionContext) {
        self.contexts.lock().unwrap().push(context.clone());
    }
}

#[async_trait]
impl Keyring for Watched {
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyringError> {
        self.saw(context);
        self.inner.generate_data_key(context).await
    }
    async fn unwrap_data_key(
        &self,
        id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<[u8; 32], KeyringError> {
        self.saw(context);
        self.inner.unwrap_data_key(id, wrapped, context).await
    }
    async fn rotate(&self) -> Result<(), KeyringError> {
        self.inner.rotate().await
    }
    async fn rewrap(
        &self,
        id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<(String, Vec<u8>), KeyringError> {
        self.saw(context);
        self.inner.rewrap(id, wrapped, context).await
    }
}

const EMBEDDED: &str = "http://127.0.0.1:3000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_logs_and_encryption_contexts_hold_no_nric_name_or_income() {
    let captured = platform_tests::Captured::everything();
    let contexts = Arc::new(Mutex::new(Vec::new()));
    let seen = contexts.clone();
    let app = platform_tests::spawn_app_with(move |platform| {
        platform.keyring = Arc::new(Watched { inner: platform.keyring.clone(), contexts: seen });
    })
    .await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (_, guardian) = app.operator("dpo@example.sg", &["data-protection"]).await;

    // Every persona through the whole flow, one with a failed check first.
    for (i, persona) in PERSONAS.iter().enumerate() {
        let (user_id, tokens) = app.user_tokens(&format!("p{i}@example.sg"), &[], 2).await;
        let token = tokens["access_token"].as_str().unwrap();
        let declaration = json!({"financial_assets": "800000.00", "residence_value": "2500000.00"});
        for fault in [Some("wrong_nonce"), None] {
            let (status, started) =
                app.post_json_as("/v1/myinfo/authorize", token, json!({"declaration": declaration})).await;
            assert_eq!(status, StatusCode::CREATED);
            let url = started["authorize_url"].as_str().unwrap().replace(EMBEDDED, &app.base);
            let redirect = client.get(format!("{url}&persona={}", persona.nric)).send().await.unwrap();
            let callback = redirect.headers()["location"].to_str().unwrap().replace(EMBEDDED, &app.base);
            if let Some(kind) = fault {
                let sim = app.url("/sim/singpass/faults");
                client.post(sim).json(&json!({"kind": kind})).send().await.unwrap();
            }
            let answer = client.get(callback).send().await.unwrap();
            let expected = if fault.is_some() { StatusCode::BAD_GATEWAY } else { StatusCode::OK };
            assert_eq!(answer.status(), expected);
        }
        let (status, _) = app
            .post_json_as(
                "/v1/me/accreditation/opt-in",
                token,
                json!({"notice_version": shared::app::myinfo::NOTICE_VERSION}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, view) = app.get_as("/v1/me/accreditation", token).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!view.to_string().contains(persona.nric), "the investor reads their NRIC masked: {view}");
        let reason = json!({"reason": "hygiene test: reading the record"});
        let (status, data) =
            app.post_json_as(&format!("/v1/admin/users/{user_id}/myinfo/reveal"), &guardian, reason).await;
        assert_eq!((status, &data["person"]["uinfin"]["value"]), (StatusCode::OK, &Value::from(persona.nric)));
    }
    myinfo::woken(&app.platform, json!({"rewrap": true, "rotate_client_keys": true})).await.unwrap();
    platform_tests::eventually("the re-wrap ran", || async {
        let stored = app.platform.store.query(&shared::ports::store::Query::partition("MYINFO#REWRAP")).await.unwrap();
        stored.items.iter().any(|i| i.decode::<Value>().unwrap()["finished_at"].is_string())
    })
    .await;

    let mut secrets: Vec<String> = Vec::new();
    for persona in PERSONAS {
        secrets.extend([persona.nric.to_owned(), persona.name.to_owned()]);
        if let Some(cents) = persona.income {
            secrets.extend([
                format!("{}", cents / 100),
                format!("{}.{:02}", cents / 100, cents % 100),
                cents.to_string(),
            ]);
        }
    }
    let logs = captured.text();
    assert!(logs.contains("myinfo assessment stored"), "the capture works");
    let contexts = contexts.lock().unwrap().clone();
    assert!(contexts.iter().any(|c| c.get("purpose").map(String::as_str) == Some("myinfo-person")));
    let context_text = serde_json::to_string(&contexts).unwrap();
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "the logs contain personal data ({} characters)", secret.len());
        assert!(!context_text.contains(secret.as_str()), "an encryption context contains personal data");
    }
    // A context names a purpose and an opaque id, nothing else.
    for context in &contexts {
        for key in context.keys() {
            assert!(["purpose", "subject", "kid", "user"].contains(&key.as_str()), "{context:?}");
        }
    }
}
