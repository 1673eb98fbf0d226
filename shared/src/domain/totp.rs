//! Time-based one-time passwords (RFC 6238): HMAC-SHA1, 30-second steps, six digits, as
//! every authenticator app computes them.

use aws_lc_rs::hmac;

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps either side of now that still count, for clocks a little apart.
pub const WINDOW: i64 = 1;

/// The code for a time step (RFC 4226 dynamic truncation).
pub fn code_for_step(secret: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    binary % 10u32.pow(DIGITS)
}

pub fn step_at(unix_seconds: i64) -> u64 {
    (unix_seconds.max(0) / STEP_SECONDS) as u64
}

/// The step `code` matches within the window around `now`, if any and if it is later than
/// `last_used` (a code is good once).
pub fn verify(secret: &[u8], code: &str, now: i64, last_used: Option<u64>) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let current = step_at(now) as i64;
    (current - WINDOW..=current + WINDOW)
        .filter(|step| *step >= 0)
        .map(|step| step as u64)
        .filter(|step| last_used.is_none_or(|used| *step > used))
        .find(|step| {
            let expected = code_for_step(secret, *step);
            aws_lc_rs::constant_time::verify_slices_are_equal(&expected.to_be_bytes(), &wanted.to_be_bytes()).is_ok()
        })
}

/// The key URI an authenticator app scans: the label (`issuer:account`) and the issuer
/// parameter percent-encoded, so any valid address (with `+`, `'`, `%`, `&`...) survives.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    use super::uri::percent_encode;
    let (issuer, account) = (percent_encode(issuer), percent_encode(account));
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret_base32}&issuer={issuer}&algorithm=SHA1&digits=6&period=30"
    )
}

/// RFC 4648 base32 without padding, as `otpauth://` URIs carry secrets.
pub fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

/// Decodes RFC 4648 base32 (upper case, no padding); `None` for anything else.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    data_encoding::BASE32_NOPAD.decode(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_match_the_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B gives eight digits; six-digit codes are the last six.
        for (time, eight) in [
            (59, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            assert_eq!(code_for_step(RFC_SECRET, step_at(time)), eight % 1_000_000, "t={time}");
        }
    }

    /// A code is six digits: the same number written shorter, or with a sign, is no code.
    #[test]
    fn a_code_with_a_leading_zero_counts_only_with_it() {
        let step = (1..).find(|s| code_for_step(RFC_SECRET, *s) < 100_000).unwrap();
        let now = i64::try_from(step).unwrap() * STEP_SECONDS;
        let code = code_for_step(RFC_SECRET, step);
        assert_eq!(verify(RFC_SECRET, &format!("{code:06}"), now, None), Some(step));
        for written in [format!("{code:05}"), format!("+{code:05}")] {
            assert_eq!(verify(RFC_SECRET, &written, now, None), None, "{written}");
        }
    }

    /// What an authenticator app scans: the label, the secret and the parameters it needs,
    /// each readable back.
    #[test]
    fn the_key_uri_carries_label_secret_and_parameters() {
        let uri = otpauth_uri("DABS", "o'brien+tag@example.sg", "GEZDGNBV");
        let (label, query) = uri.strip_prefix("otpauth://totp/").unwrap().split_once('?').unwrap();
        let label = crate::domain::uri::percent_decode(label);
        assert_eq!(label.as_deref(), Some("DABS:o'brien+tag@example.sg"));
        let params: Vec<&str> = query.split('&').collect();
        assert_eq!(params, ["secret=GEZDGNBV", "issuer=DABS", "algorithm=SHA1", "digits=6", "period=30"]);
    }

    #[test]
    fn a_code_counts_once_within_one_step_either_side() {
        let now = 1_764_000_000;
        let code = format!("{:06}", code_for_step(RFC_SECRET, step_at(now)));
        let step = verify(RFC_SECRET, &code, now, None).unwrap();
        assert_eq!(verify(RFC_SECRET, &code, now + 30, None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, now + 90, None), None);
        // An authenticator whose clock runs a step ahead.
        let ahead = format!("{:06}", code_for_step(RFC_SECRET, step + 1));
        assert_eq!(verify(RFC_SECRET, &ahead, now, None), Some(step + 1));
        let two_ahead = format!("{:06}", code_for_step(RFC_SECRET, step + 2));
        assert_eq!(verify(RFC_SECRET, &two_ahead, now, None), None);
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step)), None, "replayed");
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step - 1)), Some(step), "a later code after an earlier one");
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step + 1)), None, "an earlier code after a later one");
        assert_eq!(verify(RFC_SECRET, "12345", now, None), None);
        assert_eq!(verify(RFC_SECRET, "abcdef", now, None), None);
    }

    proptest::proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(from_base32(&base32(&bytes)), Some(bytes));
        }
    }

    #[test]
    fn base32_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), expected);
        }
    }
}
