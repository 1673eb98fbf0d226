#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let sweeper = std::sync::Arc::new(settlement::Sweeper::new(&platform));
    shared::lambda::serve_http_sqs_or_wake(settlement::app(&platform), settlement::handler(&platform), move |event| {
        let sweeper = sweeper.clone();
        async move { settlement::woken(&sweeper, event).await }
    })
    .await
}
