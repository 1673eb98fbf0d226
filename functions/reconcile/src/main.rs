use lambda_runtime::{LambdaEvent, service_fn};

/// Woken by the schedule (a `Trigger`) or by the reconcile queue (an SQS batch).
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let handler = reconcile::handler(&platform);
    let (platform, handler) = (&platform, &handler);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        reconcile::dispatch(platform, handler.as_ref(), event.payload).await
    }))
    .await
}
