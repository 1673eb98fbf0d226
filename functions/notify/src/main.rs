#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let templates = notify::Templates::new();
    if let Err(broken) = templates.check() {
        return Err(broken.to_string().into());
    }
    let woken = platform.clone();
    let app = notify::app(&platform, &templates);
    shared::lambda::serve_http_sqs_or_wake(app, notify::handler(&platform, &templates), move |event| {
        let platform = woken.clone();
        async move { notify::woken(&platform, event).await }
    })
    .await
}
