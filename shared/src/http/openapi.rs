//! The OpenAPI document: the shared part here, each function adds its own paths, and the
//! local runner merges them (`document`). The merged document is also committed as
//! `docs/openapi.json` (`cargo run -p local -- openapi > docs/openapi.json`), which every
//! Lambda function serves as [`published`]; a test keeps the two identical.

use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

use super::app::Health;
use super::problem::{FieldError, Problem};

/// An amount of SGD as the API reads it: a decimal string with at most 13 digits before
/// the point and two after (`"100"`, `"100.5"`, `"100.50"`), as `parse_cents` reads it.
/// Zero and amounts over the platform's maximum meet the schema and are refused with 422.
pub struct DecimalAmount;

impl utoipa::PartialSchema for DecimalAmount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(super::problem::AMOUNT_PATTERN))
            .description(Some("SGD, a decimal string with at most two decimals, like \"100.00\""))
            .into()
    }
}

impl utoipa::ToSchema for DecimalAmount {}

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
        // Two functions naming different schemas alike would make one route's answer be
        // documented with the other's schema.
        if let (Some(have), Some(adding)) = (&doc.components, &part.components) {
            for (name, schema) in &adding.schemas {
                let same = have.schemas.get(name).is_none_or(|known| known == schema);
                assert!(same, "two schemas are named {name}: rename one (its struct, or `#[schema(as = ...)]`)");
            }
        }
        doc.merge(part);
    }
    doc
}

/// The statuses and constraints every route shares, added to each operation of `doc` (the
/// merged document, as JSON) so the contract says what the server enforces:
/// - a JSON body: `400` (malformed, or breaking the schema), `413` (over the body limit),
///   `415` (not JSON), `422` (meeting the schema, refused by a rule of content);
/// - path or query parameters: `400` (a value that does not decode, a forged cursor);
/// - a path parameter: `404` (nothing under that id);
/// - a bearer token: `401`, and `403` and `429` (the access policy refuses, and refusals are
///   throttled per caller);
/// - paging: `limit` 1 to [`super::page::MAX_LIMIT`], `cursor` not empty;
/// - `Idempotency-Key`: 1 to 100 of letters, digits, `-`, `_`, `.`, `:`.
pub fn complete(mut doc: serde_json::Value) -> serde_json::Value {
    use serde_json::json;
    let problem = |description: &str| {
        json!({"description": description,
               "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
    };
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else { return doc };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let has_body = op.get("requestBody").is_some();
            let secured = op.get("security").and_then(|s| s.as_array()).is_some_and(|s| !s.is_empty());
            let params = op.get_mut("parameters").and_then(|p| p.as_array_mut());
            let mut has_params = path.contains('{');
            for param in params.into_iter().flatten() {
                has_params = true;
                let name = param.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
                let Some(schema) = param.get_mut("schema").and_then(|s| s.as_object_mut()) else { continue };
                match name.as_str() {
                    "limit" => {
                        schema.insert("minimum".into(), json!(1));
                        schema.insert("maximum".into(), json!(super::page::MAX_LIMIT));
                    }
                    "cursor" => {
                        schema.insert("minLength".into(), json!(1));
                    }
                    "Idempotency-Key" => {
                        schema.insert("minLength".into(), json!(1));
                        schema.insert("maxLength".into(), json!(100));
                        schema.insert("pattern".into(), json!("^[A-Za-z0-9_.:-]+$"));
                    }
                    _ => {}
                }
            }
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else { continue };
            let mut add = |status: &str, description: &str| {
                responses.entry(status).or_insert_with(|| problem(description));
            };
            if has_body {
                add("400", "Malformed JSON, or a field that breaks the schema (named in `errors`)");
                add("413", "The body is over the limit");
                add("415", "The body is not `application/json`");
                add("422", "A field meets the schema and a rule of content refuses it (named in `errors`)");
            }
            if has_params {
                add("400", "A parameter that does not decode or breaks a rule (named in `errors`)");
            }
            if path.contains('{') {
                add("404", "Nothing under that id, or nothing the caller may see");
            }
            if secured {
                add("401", "No valid access token");
                add("403", "The access policy refuses the caller");
                add("429", "Too many refused calls: wait `Retry-After` seconds");
            }
        }
    }
    doc
}

/// The committed document of the whole API, as the Lambda functions serve it.
pub fn published() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn every_operation_gets_the_statuses_and_constraints_its_inputs_imply() {
        let doc = json!({"paths": {
            "/v1/things/{id}": {"post": {
                "parameters": [{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"}}],
                "requestBody": {}, "security": [{"bearer": []}],
                "responses": {"201": {"description": "made"}, "400": {"description": "kept"}}
            }},
            "/v1/things": {"get": {
                "parameters": [{"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 0}}],
                "responses": {"200": {"description": "listed"}}
            }},
            "/health": {"get": {"responses": {"200": {"description": "up"}}}}
        }});
        let doc = super::complete(doc);
        let statuses = |path: &str, method: &str| -> Vec<String> {
            doc["paths"][path][method]["responses"].as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            statuses("/v1/things/{id}", "post"),
            ["201", "400", "401", "403", "404", "413", "415", "422", "429"]
        );
        assert_eq!(doc["paths"]["/v1/things/{id}"]["post"]["responses"]["400"]["description"], "kept");
        assert_eq!(statuses("/v1/things", "get"), ["200", "400"]);
        assert_eq!(statuses("/health", "get"), ["200"]);
        let limit = &doc["paths"]["/v1/things"]["get"]["parameters"][0]["schema"];
        assert_eq!((limit["minimum"].as_u64(), limit["maximum"].as_u64()), (Some(1), Some(200)));
        let key = &doc["paths"]["/v1/things/{id}"]["post"]["parameters"][0]["schema"];
        assert_eq!((key["minLength"].as_u64(), key["maxLength"].as_u64()), (Some(1), Some(100)));
    }
}
