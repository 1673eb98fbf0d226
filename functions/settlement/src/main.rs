#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let sweeper = std::sync::Arc::new(settlement::Sweeper::new(&platform));
    shared::lambda::serve_sqs_or_wake(settlement::handler(&platform), move || {
        let sweeper = sweeper.clone();
        async move { sweeper.run_once().await.map(|swept| tracing::info!(?swept, "swept")) }
    })
    .await
}
