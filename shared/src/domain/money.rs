//! SGD amounts: integer cents inside, decimal strings (`"100.00"`) at the edges. No
//! floating point anywhere.

/// The largest amount a single request may name: SGD 10 billion.
pub const MAX_CENTS: u64 = 1_000_000_000_000;

/// Why a decimal string is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("an amount is a decimal string with at most two decimals, like \"100.00\"")]
    Format,
    #[error("the amount must be more than zero")]
    NotPositive,
    #[error("the amount is too large")]
    TooLarge,
}

/// Parses `"100"`, `"100.5"` or `"100.50"` into cents; refuses signs, exponents, more than
/// two decimals, zero and amounts above [`MAX_CENTS`].
pub fn parse_cents(text: &str) -> Result<u64, MoneyError> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 13 || !digits(whole) || fraction.len() > 2 || !digits(fraction) {
        return Err(MoneyError::Format);
    }
    if text.ends_with('.') {
        return Err(MoneyError::Format);
    }
    let whole: u64 = whole.parse().map_err(|_| MoneyError::Format)?;
    let fraction: u64 = format!("{fraction:0<2}").parse().map_err(|_| MoneyError::Format)?;
    let cents = whole.checked_mul(100).and_then(|c| c.checked_add(fraction)).ok_or(MoneyError::TooLarge)?;
    match cents {
        0 => Err(MoneyError::NotPositive),
        c if c > MAX_CENTS => Err(MoneyError::TooLarge),
        c => Ok(c),
    }
}

/// Formats cents (possibly negative) as a decimal string with two decimals.
pub fn format_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_plain_decimals_and_refuses_everything_else() {
        assert_eq!(parse_cents("100.00"), Ok(10_000));
        assert_eq!(parse_cents("0.5"), Ok(50));
        assert_eq!(parse_cents("7"), Ok(700));
        for bad in ["", ".5", "5.", "1.005", "-1", "+1", "1e3", "1,00", " 1", "NaN", "١"] {
            assert_eq!(parse_cents(bad), Err(MoneyError::Format), "{bad:?}");
        }
        assert_eq!(parse_cents("0.00"), Err(MoneyError::NotPositive));
        assert_eq!(parse_cents("10000000000.01"), Err(MoneyError::TooLarge));
        assert_eq!(format_cents(-5), "-0.05");
    }

    /// The edges a mutation run found untested: zero's sign, the largest amount, the
    /// thirteen whole digits the format allows.
    #[test]
    fn the_bounds_sit_exactly_where_they_are_documented() {
        assert_eq!(format_cents(0), "0.00", "zero has no sign");
        assert_eq!(format_cents(1), "0.01");
        assert_eq!(parse_cents("10000000000.00"), Ok(MAX_CENTS), "the largest amount is accepted");
        assert_eq!(parse_cents("10000000000.01"), Err(MoneyError::TooLarge));
        assert_eq!(parse_cents("1000000000000"), Err(MoneyError::TooLarge), "thirteen whole digits: too large");
        assert_eq!(parse_cents("10000000000000"), Err(MoneyError::Format), "fourteen: not an amount");
        assert_eq!(parse_cents("0.01"), Ok(1), "the smallest amount is accepted");
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_is_the_identity(cents in 1..=MAX_CENTS) {
            prop_assert_eq!(parse_cents(&format_cents(i128::from(cents))), Ok(cents));
        }
    }
}
