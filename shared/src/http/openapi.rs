//! The OpenAPI document: the shared part here, each function adds its own paths, and the
//! local runner merges them (`document`). The merged document is also committed as
//! `docs/openapi.json` (`cargo run -p local -- openapi > docs/openapi.json`), which every
//! Lambda function serves as [`published`]; a test keeps the two identical.

use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

use super::app::Health;
use super::problem::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(title = "DABS platform API", description = "Fractional real-estate investment: digital asset-backed securities, subscriptions, allocation, settlement and reconciliation."),
    paths(super::app::health),
    components(schemas(Problem, FieldError, Health)),
    tags((name = "platform", description = "Health and documentation"))
)]
struct Shared;

/// The shared document merged with every function's own.
pub fn document(parts: impl IntoIterator<Item = Document>) -> Document {
    let mut doc = Shared::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for part in parts {
        doc.merge(part);
    }
    doc
}

/// The committed document of the whole API, as the Lambda functions serve it.
pub fn published() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap_or_default()
}
