/// Woken by the schedule (a `Trigger`) or by the reconcile queue (an SQS batch of runs
/// operators asked for).
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    shared::lambda::serve_sqs_or_wake(reconcile::handler(&platform), move |payload| {
        let platform = platform.clone();
        async move { reconcile::scheduled(&platform, payload).await }
    })
    .await
}
