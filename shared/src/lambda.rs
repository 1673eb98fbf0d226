//! Running under the Lambda runtime: what every `main.rs` calls.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};

use crate::app::consumer::{BatchHandler, handle_sqs_event};

pub type Error = lambda_runtime::Error;

/// Serves an HTTP function's router behind API Gateway.
pub async fn serve_http(app: axum::Router) -> Result<(), Error> {
    lambda_http::run(app).await
}

/// Serves a queue consumer behind an SQS event source with `ReportBatchItemFailures`.
pub async fn serve_sqs(handler: Arc<dyn BatchHandler>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<SqsBatchResponse, Error>(handle_sqs_event(handler.as_ref(), event.payload).await) }
    }))
    .await
}

/// Serves a function woken by more than one source: API Gateway requests go to `app`,
/// the rest as [`dispatch`] says.
pub async fn serve_http_sqs_or_wake<W, F>(
    app: axum::Router,
    handler: Arc<dyn BatchHandler>,
    wake: W,
) -> Result<(), Error>
where
    W: Fn(serde_json::Value) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<serde_json::Value, Error>> + Send,
{
    let wake = Arc::new(wake);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (app, handler, wake) = (app.clone(), handler.clone(), wake.clone());
        async move { dispatch_event(app, handler.as_ref(), wake.as_ref(), event).await }
    }))
    .await
}

/// API Gateway requests go to `app`; the rest as [`dispatch`] says.
pub async fn dispatch_event<W, F>(
    app: axum::Router,
    handler: &dyn BatchHandler,
    wake: &W,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, Error>
where
    W: Fn(serde_json::Value) -> F,
    F: std::future::Future<Output = Result<serde_json::Value, Error>>,
{
    if is_http(&event.payload) {
        return http_answer(app, event).await;
    }
    dispatch(handler, wake, event.payload).await
}

/// Whether an event is an API Gateway request (it has a request context; no queue,
/// stream or schedule event does).
pub fn is_http(payload: &serde_json::Value) -> bool {
    payload.get("requestContext").is_some_and(|c| c.get("http").is_some())
}

/// `app`'s answer to an API Gateway request, as the runtime returns it.
pub async fn http_answer(app: axum::Router, event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, Error> {
    use tower::Service as _;
    let request: lambda_http::request::LambdaRequest = serde_json::from_value(event.payload)?;
    let mut adapter = lambda_http::Adapter::from(app);
    let response = adapter.call(LambdaEvent::new(request, event.context)).await?;
    Ok(serde_json::to_value(response)?)
}

/// SQS batches go to `handler` (answering the batch's failures); any other event (a
/// DynamoDB stream batch, a schedule) goes to `wake`, whose answer is the function's.
pub async fn dispatch<W, F>(
    handler: &dyn BatchHandler,
    wake: &W,
    payload: serde_json::Value,
) -> Result<serde_json::Value, Error>
where
    W: Fn(serde_json::Value) -> F,
    F: std::future::Future<Output = Result<serde_json::Value, Error>>,
{
    if payload.pointer("/Records/0/eventSource").and_then(|s| s.as_str()) == Some("aws:sqs") {
        let batch: SqsEvent = serde_json::from_value(payload)?;
        return Ok(serde_json::to_value(handle_sqs_event(handler, batch).await)?);
    }
    wake(payload).await
}
