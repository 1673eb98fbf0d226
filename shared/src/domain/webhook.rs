//! Signed partner webhooks: `HMAC-SHA256(secret, "<timestamp>.<body>")`, hex, sent as
//! `v1=<hex>` with the Unix timestamp in its own header. A receiver refuses a bad
//! signature and a timestamp outside the replay window.

use aws_lc_rs::hmac;

/// How far a webhook's timestamp may be from now, either way.
pub const REPLAY_WINDOW_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    #[error("missing or malformed signature")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the timestamp is outside the replay window")]
    Stale,
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &message(timestamp, body));
    format!("v1={}", data_encoding::HEXLOWER.encode(tag.as_ref()))
}

/// Checks a webhook: the signature first (in constant time), then its age.
pub fn verify(secret: &[u8], signature: &str, timestamp: &str, body: &[u8], now: i64) -> Result<(), SignatureRefusal> {
    let timestamp: i64 = timestamp.parse().map_err(|_| SignatureRefusal::Malformed)?;
    let hex = signature.strip_prefix("v1=").ok_or(SignatureRefusal::Malformed)?;
    if hex.len() != 64 {
        return Err(SignatureRefusal::Malformed);
    }
    let tag = data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()).map_err(|_| SignatureRefusal::Malformed)?;
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), &message(timestamp, body), &tag)
        .map_err(|_| SignatureRefusal::Mismatch)?;
    if (now - timestamp).abs() > REPLAY_WINDOW_SECONDS {
        return Err(SignatureRefusal::Stale);
    }
    Ok(())
}

fn message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn a_signed_body_verifies_and_any_change_is_refused() {
        let body = br#"{"type":"payout.settled"}"#;
        let signature = sign(SECRET, 1_700_000_000, body);
        assert_eq!(verify(SECRET, &signature, "1700000000", body, 1_700_000_100), Ok(()));
        assert_eq!(verify(SECRET, &signature, "1700000001", body, 1_700_000_100), Err(SignatureRefusal::Mismatch));
        assert_eq!(verify(SECRET, &signature, "1700000000", b"{}", 1_700_000_100), Err(SignatureRefusal::Mismatch));
        assert_eq!(verify(b"other", &signature, "1700000000", body, 1_700_000_100), Err(SignatureRefusal::Mismatch));
        assert_eq!(verify(SECRET, &signature, "1700000000", body, 1_700_000_301), Err(SignatureRefusal::Stale));
        // Exactly the replay window old, either way, is still in time.
        assert_eq!(verify(SECRET, &signature, "1700000000", body, 1_700_000_300), Ok(()));
        assert_eq!(verify(SECRET, &signature, "1700000000", body, 1_699_999_700), Ok(()));
        assert_eq!(verify(SECRET, "v1=zz", "1700000000", body, 1_700_000_000), Err(SignatureRefusal::Malformed));
        assert_eq!(verify(SECRET, &signature, "soon", body, 1_700_000_000), Err(SignatureRefusal::Malformed));
    }
}
