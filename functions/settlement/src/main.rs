#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let sweeper = std::sync::Arc::new(settlement::Sweeper::new(&platform));
    // A stream batch or the schedule only wakes the sweep, which works from the table: the
    // event's contents do not matter and redelivery is harmless.
    shared::lambda::serve_sqs_or_wake(settlement::handler(&platform), move |_| {
        let sweeper = sweeper.clone();
        async move {
            let swept = sweeper.run_once().await?;
            tracing::info!(?swept, "swept");
            Ok(serde_json::Value::Null)
        }
    })
    .await
}
