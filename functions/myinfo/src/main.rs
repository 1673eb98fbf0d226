#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let woken = platform.clone();
    shared::lambda::serve_http_sqs_or_wake(myinfo::app(&platform), myinfo::handler(&platform), move |event| {
        let platform = woken.clone();
        async move { myinfo::woken(&platform, event).await }
    })
    .await
}
