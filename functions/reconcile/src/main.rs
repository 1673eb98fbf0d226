use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::telemetry::init();
    let platform = shared::Platform::aws().await?;
    let platform = &platform;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<reconcile::Trigger>| async move {
        reconcile::run(platform, event.payload).await.map_err(shared::lambda::Error::from)
    }))
    .await
}
