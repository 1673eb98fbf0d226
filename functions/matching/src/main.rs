#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let woken = platform.clone();
    shared::lambda::serve_http_sqs_or_wake(matching::app(&platform), matching::handler(&platform), move |event| {
        let platform = woken.clone();
        async move { matching::woken(&platform, event).await }
    })
    .await
}
