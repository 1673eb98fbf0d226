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
