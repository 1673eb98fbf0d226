//! The whole platform on the embedded adapters, started as the local runner starts it,
//! and driven over HTTP like any client.

use std::time::{Duration, Instant};

use platform_tests::spawn_app;
use reqwest::StatusCode;
use serde_json::Value;
use shared::ports::queue::QueueName;

async fn get(url: String) -> (StatusCode, String, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_answers_ok_with_version_and_backend() {
    let app = spawn_app().await;
    let (status, _, body) = get(format!("{}/health", app.base)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], "embedded");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn the_openapi_document_is_served_and_describes_the_shared_shapes() {
    let app = spawn_app().await;
    let (status, content_type, doc) = get(format!("{}/openapi.json", app.base)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("application/json"));
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/health"]["get"].is_object(), "{doc}");
    for schema in ["Problem", "FieldError", "Health"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "missing {schema}");
    }
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_oversize_bodies_get_problems() {
    let app = spawn_app().await;
    let (status, content_type, body) = get(format!("{}/v1/unknown", app.base)).await;
    assert_eq!(
        (status, content_type.as_str(), body["status"].as_u64()),
        (StatusCode::NOT_FOUND, "application/problem+json", Some(404))
    );

    let client = reqwest::Client::new();
    let response = client.post(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["content-type"], "application/problem+json");

    let oversize = vec![b'x'; shared::http::BODY_LIMIT + 1];
    let response = client.post(format!("{}/v1/anything", app.base)).body(oversize).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_queue_consumers_run_and_dead_letter_what_they_cannot_handle() {
    let app = spawn_app().await;
    for queue in QueueName::ALL {
        app.platform.queue.send(queue, vec![format!("{{\"kind\":\"unknown-{queue}\"}}")]).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for queue in QueueName::ALL {
        loop {
            let dead = app.platform.queue.dead_letters(queue, 10).await.unwrap();
            if let Some(message) = dead.first() {
                assert_eq!(message.message.body, format!("{{\"kind\":\"unknown-{queue}\"}}"));
                // Every consumer knows an unreadable message fails for good and
                // dead-letters it at once, before the queue's receive limit would.
                assert_eq!(message.message.receive_count, 0, "{queue}");
                break;
            }
            assert!(Instant::now() < deadline, "the {queue} consumer never dead-lettered the message");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn stopping_closes_the_port_after_in_flight_work() {
    let app = spawn_app().await;
    let url = format!("{}/health", app.base);
    assert_eq!(get(url.clone()).await.0, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(10), app.running.stop()).await.expect("stops promptly");
    assert!(reqwest::get(url).await.is_err(), "the port still answers after stop");
}

#[tokio::test]
async fn the_committed_openapi_document_is_the_one_the_routers_assemble() {
    // Lambda functions serve docs/openapi.json; the local runner serves the live merge.
    let live = local::docs();
    assert_eq!(
        shared::http::openapi::published(),
        live,
        "docs/openapi.json is stale: run `cargo run -p local -- openapi > docs/openapi.json`"
    );
}

#[tokio::test]
async fn the_first_two_operators_are_bootstrapped_once_and_the_second_approves_the_firsts_change() {
    let app = spawn_app().await;
    let bootstrap = |a: &'static str, b: &'static str| local::seed::bootstrap_operators(&app.platform, a, b);
    assert!(bootstrap("root@example.sg", "Root@Example.SG").await.is_err(), "two people");
    let operators = bootstrap("root@example.sg", "colleague@example.sg").await.unwrap();
    assert!(bootstrap("third@example.sg", "fourth@example.sg").await.is_err(), "only the first");
    let mut tokens = Vec::new();
    for who in ["super_admin", "co_operator"] {
        let operator = &operators[who];
        let login = serde_json::json!({"email": operator["email"], "password": operator["password"]});
        let (status, challenge) = app.post("/v1/auth/login", login).await;
        assert_eq!((status, challenge["mfa_required"].as_bool()), (StatusCode::OK, Some(true)));
        let secret = shared::domain::totp::from_base32(operator["totp_secret"].as_str().unwrap()).unwrap();
        let now = shared::ports::Clock::now(app.platform.clock.as_ref()).timestamp();
        let code = format!("{:06}", shared::domain::totp::code_for_step(&secret, shared::domain::totp::step_at(now)));
        let (status, answer) = app
            .post("/v1/auth/login/mfa", serde_json::json!({"challenge": challenge["challenge"], "code": code}))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        tokens.push(answer["access_token"].as_str().unwrap().to_owned());
    }
    // The super-admin proposes a finance role for a new colleague; the co-operator approves.
    let newcomer = app.logged_in("newcomer@example.sg", "correct horse battery staple").await;
    let (_, me) = app.get_as("/v1/me", newcomer["access_token"].as_str().unwrap()).await;
    let grant = serde_json::json!({"action": "grant", "role": "finance"});
    let path = format!("/v1/admin/users/{}/roles", me["user_id"].as_str().unwrap());
    let (status, request) = app.post_json_as(&path, &tokens[0], grant).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &tokens[1], None).await, StatusCode::OK);
}
