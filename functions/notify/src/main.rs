#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let templates = notify::Templates::new();
    if let Err(broken) = templates.check() {
        return Err(broken.to_string().into());
    }
    let notices = std::sync::Arc::new(platform.notices());
    let app = notify::app(&platform, &templates);
    shared::lambda::serve_http_sqs_or_wake(app, notify::handler(&platform, &templates), move |event| {
        let notices = notices.clone();
        async move { notify::woken(&notices, event).await }
    })
    .await
}
