//! The event fixtures in `infra/events/` (used with `cargo lambda invoke --data-file`)
//! go through the same code paths the Lambda runtime drives.

use std::sync::Arc;

use shared::Platform;
use shared::adapters::clock::SystemClock;
use tower::ServiceExt;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../infra/events/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn platform() -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Platform::ephemeral(dir.path(), Arc::new(SystemClock)).unwrap(), dir)
}

#[tokio::test]
async fn an_api_gateway_request_reaches_the_router_and_answers_health() {
    let (platform, _dir) = platform();
    let event: lambda_http::request::LambdaRequest = serde_json::from_str(&fixture("health-http.json")).unwrap();
    let request: lambda_http::Request = event.into();
    let response = auth::app(&platform).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn an_sqs_event_reports_only_the_failed_messages() {
    let (platform, _dir) = platform();
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&fixture("allocation-sqs.json")).unwrap();
    let ids: Vec<String> = event.records.iter().filter_map(|r| r.message_id.clone()).collect();
    let response = shared::app::consumer::handle_sqs_event(allocation::handler(&platform).as_ref(), event).await;
    let failed: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    // No message kind is known to the allocation function yet: each one is reported failed.
    assert_eq!(failed, ids);
}

#[tokio::test]
async fn the_schedule_event_parses_and_a_run_without_sources_is_an_error_not_a_success() {
    let (platform, _dir) = platform();
    let trigger: reconcile::Trigger = serde_json::from_str(&fixture("reconcile-schedule.json")).unwrap();
    assert!(trigger.cut_off.is_none());
    assert!(reconcile::run(&platform, trigger).await.is_err());
}
