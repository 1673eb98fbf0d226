/// Woken by API Gateway (finance's routes), the schedule (a `Trigger`) or the reconcile
/// queue (an SQS batch of runs operators asked for).
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let app = reconcile::app(&platform);
    shared::lambda::serve_http_sqs_or_wake(app, reconcile::handler(&platform), move |payload| {
        let platform = platform.clone();
        async move { reconcile::scheduled(&platform, payload).await }
    })
    .await
}
