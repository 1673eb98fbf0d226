//! Percent-encoding (RFC 3986): everything but the unreserved characters, so the result is
//! safe in a path segment, a query value or an `otpauth://` label.

/// `text` with every byte outside `A-Z a-z 0-9 - _ . ~` written as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(b as char),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

/// The inverse of [`percent_encode`]; `None` for a malformed escape or bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_round_trips_and_encodes_to_unreserved_characters_and_escapes(text in "\\PC*") {
            let encoded = percent_encode(&text);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
            prop_assert_eq!(percent_decode(&encoded), Some(text));
        }
    }

    #[test]
    fn reserved_characters_of_an_address_are_escaped() {
        assert_eq!(percent_encode("o'brien+tag@example.sg"), "o%27brien%2Btag%40example.sg");
        assert_eq!(percent_encode("a b/c?d#e&f=g:h"), "a%20b%2Fc%3Fd%23e%26f%3Dg%3Ah");
    }
}
