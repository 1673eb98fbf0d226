//! A JSON body extractor whose every refusal is a problem+json naming what is wrong:
//! 415 without a JSON content type, 413 over the body limit, 400 for malformed JSON,
//! and 400 with the field's path when the shape is wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::problem::{ApiError, FieldError};

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Extracts a JSON body, or answers a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::unsupported_media_type("send the body as application/json"));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(BODY_LIMIT)
            } else {
                ApiError::malformed("the body could not be read")
            }
        })?;
        parse(&bytes).map(Json)
    }
}

/// A whole number written with a fraction of zero (`10.0`) as the integer it is: JSON
/// Schema's `integer` admits both, so the API does too.
fn whole_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if !n.is_u64() && !n.is_i64() => {
            if let Some(f) = n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0) {
                // Small enough, the integer is the one sent. So large that a float may be off
                // in its last digit (or saturates), every field's bound refuses it with 422.
                *value = if f < 0.0 { Value::from(f as i64) } else { Value::from(f as u64) };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Parses a JSON document, naming the field at fault. Straight from the bytes; only a
/// body that does not fit its type is read again with whole numbers normalised. Every
/// body the API takes is an object: serde would read a struct from an array of its
/// fields in order (`[false]`), which the documented schema refuses, so this does too.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(ApiError::validation(vec![FieldError::new("body", "the body must be a JSON object")]));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize(deserializer) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.classify() != serde_json::error::Category::Data {
        return Err(ApiError::malformed(format!(
            "the body is not valid JSON (line {}, column {})",
            inner.line(),
            inner.column()
        )));
    }
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        whole_numbers(&mut value);
        if let Ok(parsed) = serde_json::from_value(value) {
            return Ok(parsed);
        }
    }
    let message = inner.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    // serde names a missing field in its message, at the parent's path.
    let field = match message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
        Some(missing) if path == "." => missing.to_owned(),
        Some(missing) => format!("{path}.{missing}"),
        None if path == "." => "body".to_owned(),
        None => path,
    };
    Err(ApiError::validation(vec![FieldError::new(field, message)]))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        units: u64,
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_naming_the_body() {
        for other in [&b"[10]"[..], b" [10]", b"10", b"\"units\"", b"null", b"true"] {
            let refused = super::parse::<Body>(other).unwrap_err();
            assert_eq!(refused.status(), axum::http::StatusCode::BAD_REQUEST);
            assert_eq!(refused.problem().errors[0].field, "body", "{}", String::from_utf8_lossy(other));
        }
        // Not JSON at all is malformed, as before.
        assert_eq!(super::parse::<Body>(b"[10").unwrap_err().problem().errors.len(), 0);
    }

    #[test]
    fn a_whole_number_with_a_zero_fraction_is_the_integer_and_a_fraction_is_refused() {
        assert_eq!(super::parse::<Body>(br#"{"units": 330960176731.0}"#).unwrap(), Body { units: 330_960_176_731 });
        assert_eq!(super::parse::<Body>(br#"{"units": 10}"#).unwrap(), Body { units: 10 });
        // So large, a number written with a fraction is read as a float that may be off in
        // its last digit: still an integer, which every field's bound refuses.
        for huge in [&br#"{"units": 9007199254740991.0}"#[..], br#"{"units": 1e20}"#] {
            assert!(super::parse::<Body>(huge).unwrap().units > 9_000_000_000_000_000);
        }
        let fraction = super::parse::<Body>(br#"{"units": 10.5}"#).unwrap_err().problem();
        assert_eq!((fraction.status, fraction.errors[0].field.as_str()), (400, "units"));
        assert_eq!(super::parse::<Body>(br#"{"units": -1.0}"#).unwrap_err().problem().status, 400);
        assert_eq!(super::parse::<Body>(b"{").unwrap_err().problem().kind, "/problems/malformed-request");
    }
}
