//! The shared HTTP layer, through `shared::http::service` exactly as every function and
//! the local runner serve it: problems, the JSON extractor, limits, request ids.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::Platform;
use shared::adapters::clock::SystemClock;
use shared::http::{ApiError, BODY_LIMIT, Json};
use tower::ServiceExt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Order {
    units: u32,
    amount: String,
    investor: Investor,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Investor {
    email: String,
}

fn app() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::ephemeral(dir.path(), Arc::new(SystemClock)).unwrap();
    let routes = Router::new()
        .route("/orders", post(|Json(order): Json<Order>| async move { Json(json!({ "units": order.units })) }))
        .route(
            "/boom",
            get(|| async {
                panic!("handler bug with secret detail");
                #[allow(unreachable_code)]
                ()
            }),
        )
        .route(
            "/fails",
            get(|| async { Err::<(), _>(ApiError::internal(&std::io::Error::other("db password=hunter2 rejected"))) }),
        );
    (shared::http::service(routes, &platform, serde_json::json!({})), dir)
}

async fn call(request: Request<Body>) -> (StatusCode, Option<String>, Value, axum::http::HeaderMap) {
    let (app, _dir) = app();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, content_type, body, headers)
}

fn post_json(body: impl Into<Body>) -> Request<Body> {
    Request::post("/orders").header(header::CONTENT_TYPE, "application/json").body(body.into()).unwrap()
}

fn assert_problem(status: StatusCode, content_type: Option<String>, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(body["status"], expected.as_u16());
    assert!(body["type"].as_str().unwrap().starts_with("/problems/"), "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
}

#[tokio::test]
async fn a_valid_body_reaches_the_handler() {
    let body = json!({"units": 3, "amount": "300.00", "investor": {"email": "a@b.sg"}});
    let (status, _, body, _) = call(post_json(body.to_string())).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"units": 3})));
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let (status, content_type, body, _) = call(post_json("{\"units\": 3,")).await;
    assert_problem(status, content_type, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "/problems/malformed-request");
}

#[tokio::test]
async fn a_wrong_type_names_the_field_by_its_path() {
    let body = json!({"units": 3, "amount": "1.00", "investor": {"email": 7}});
    let (status, content_type, body, _) = call(post_json(body.to_string())).await;
    assert_problem(status, content_type, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "investor.email", "{body}");
}

#[tokio::test]
async fn a_missing_field_is_named() {
    let (status, content_type, body, _) =
        call(post_json(json!({"units": 3, "investor": {"email": "a@b.sg"}}).to_string())).await;
    assert_problem(status, content_type, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "amount", "{body}");
    let nested = json!({"units": 3, "amount": "1.00", "investor": {}});
    let (_, _, body, _) = call(post_json(nested.to_string())).await;
    assert_eq!(body["errors"][0]["field"], "investor.email", "{body}");
}

#[tokio::test]
async fn an_unknown_field_is_refused_by_name() {
    let body = json!({"units": 3, "amount": "1.00", "investor": {"email": "a@b.sg"}, "discount": "5.00"});
    let (status, _, body, _) = call(post_json(body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("discount"), "{body}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let request =
        Request::post("/orders").header(header::CONTENT_TYPE, "text/plain").body(Body::from("units=3")).unwrap();
    let (status, content_type, body, _) = call(request).await;
    assert_problem(status, content_type, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn an_oversize_body_is_a_413_problem_announced_or_streamed() {
    let big = format!("{{\"amount\": \"{}\"}}", "9".repeat(BODY_LIMIT));
    let (status, content_type, body, _) = call(post_json(big.clone())).await;
    assert_problem(status, content_type, &body, StatusCode::PAYLOAD_TOO_LARGE);
    // Without a Content-Length the limit still holds while reading.
    let chunks = big.into_bytes().chunks(8192).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>();
    let streamed = post_json(Body::from_stream(futures_util::stream::iter(chunks)));
    assert!(streamed.headers().get(header::CONTENT_LENGTH).is_none());
    let (status, content_type, body, _) = call(streamed).await;
    assert_problem(status, content_type, &body, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_problems() {
    let (status, content_type, body, _) = call(Request::get("/v1/nothing-here").body(Body::empty()).unwrap()).await;
    assert_problem(status, content_type, &body, StatusCode::NOT_FOUND);
    let (status, content_type, body, _) = call(Request::delete("/orders").body(Body::empty()).unwrap()).await;
    assert_problem(status, content_type, &body, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_panic_or_an_internal_error_is_a_500_problem_that_leaks_nothing() {
    for path in ["/boom", "/fails"] {
        let (status, content_type, body, _) = call(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_problem(status, content_type, &body, StatusCode::INTERNAL_SERVER_ERROR);
        let text = body.to_string();
        assert!(!text.contains("secret") && !text.contains("hunter2") && !text.contains("password"), "{text}");
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_sane_caller_id_is_kept() {
    let (_, _, _, headers) = call(Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(headers["x-request-id"].len(), 26);
    let request = Request::get("/health").header("x-request-id", "trace-abc.123").body(Body::empty()).unwrap();
    let (_, _, _, headers) = call(request).await;
    assert_eq!(headers["x-request-id"], "trace-abc.123");
    let request = Request::get("/health").header("x-request-id", "bad id\twith junk").body(Body::empty()).unwrap();
    let (_, _, _, headers) = call(request).await;
    assert_ne!(headers["x-request-id"], "bad id\twith junk");
}
