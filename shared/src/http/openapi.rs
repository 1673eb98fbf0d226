//! The OpenAPI document: the shared part here, each function adds its own paths, and the
//! entry point merges them (`document`).

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
