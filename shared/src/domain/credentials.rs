//! Email addresses and passwords as types: parsed once at the edge, valid everywhere after.

use std::fmt;

use crate::http::FieldError;

/// A normalised (trimmed, lower-cased) email address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let address = raw.trim().to_lowercase();
        let invalid = |message: &str| FieldError::new("email", message);
        if address.len() > 254 {
            return Err(invalid("at most 254 characters"));
        }
        let (local, domain) = address.split_once('@').ok_or_else(|| invalid("not an email address"))?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        if !domain_ok || !local_ok {
            return Err(invalid("not an email address"));
        }
        Ok(Self(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Logs and debug output show the domain only.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.split_once('@').map_or("", |(_, d)| d);
        write!(f, "***@{domain}")
    }
}

pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 128;

/// A password that passed the policy. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// Applies the policy: length, and the patterns of breached passwords. `email` is the
    /// account's address, which the password must not contain.
    pub fn parse(raw: &str, email: &EmailAddress) -> Result<Self, FieldError> {
        let refuse = |message: &str| FieldError::new("password", message);
        let length = raw.chars().count();
        if length < PASSWORD_MIN {
            return Err(refuse(&format!("at least {PASSWORD_MIN} characters")));
        }
        if length > PASSWORD_MAX {
            return Err(refuse(&format!("at most {PASSWORD_MAX} characters")));
        }
        let lower = raw.to_lowercase();
        let local = email.as_str().split('@').next().unwrap_or_default();
        if local.len() >= 3 && lower.contains(local) {
            return Err(FieldError::refused("password", "must not contain your email address"));
        }
        // zxcvbn estimates the guesses an attacker with dictionaries of breached passwords,
        // names and keyboard patterns needs; 3 ("safely unguessable") is 10^8 or more.
        let strength = zxcvbn::zxcvbn(raw, &[email.as_str(), local, "dabs", "singapore"]);
        if strength.score() < zxcvbn::Score::Three {
            let hint = strength.feedback().and_then(|f| f.warning()).map(|w| format!(": {w}")).unwrap_or_default();
            let message = format!("too easy to guess, like passwords in breached lists{hint}");
            return Err(FieldError::refused("password", message));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password without policy, for checking a login attempt.
    pub fn attempt(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> EmailAddress {
        EmailAddress::parse("Tan.Wei@Example.SG").unwrap()
    }

    #[test]
    fn emails_are_normalised_and_malformed_ones_refused() {
        assert_eq!(email().as_str(), "tan.wei@example.sg");
        for bad in ["", "no-at-sign", "a@b", "a@.sg", "a@b..sg", "a b@c.sg", "@c.sg", "a@c.sg.", "a@-\u{e9}.sg"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", email()), "***@example.sg");
        // Hyphens are the one mark a domain label takes.
        assert_eq!(
            EmailAddress::parse("ops@dabs-platform.example.sg").unwrap().as_str(),
            "ops@dabs-platform.example.sg"
        );
        for bad in ["ops@dabs_platform.sg", "ops@dabs!platform.sg"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    /// zxcvbn's score 3 ("safely unguessable") is the bar: a password that just reaches
    /// it is taken.
    #[test]
    fn a_password_just_safely_unguessable_is_taken() {
        let barely = "Zebra7Lantern";
        let score = zxcvbn::zxcvbn(barely, &[email().as_str(), "tan.wei", "dabs", "singapore"]).score();
        assert_eq!(score, zxcvbn::Score::Three);
        assert_eq!(Password::parse(barely, &email()).unwrap().expose(), barely);
    }

    #[test]
    fn an_address_is_at_most_254_characters() {
        let of_length = |n: usize| format!("{}@{}.sg", "a".repeat(64), "d".repeat(n - 64 - 1 - 3));
        assert_eq!(of_length(254).len(), 254);
        assert!(EmailAddress::parse(&of_length(254)).is_ok());
        assert!(EmailAddress::parse(&of_length(255)).is_err());
    }

    #[test]
    fn passwords_are_refused_with_the_rule_they_break() {
        let cases = [
            ("short1!", "at least 12 characters"),
            ("Password1234!", "breached"),
            ("password123456", "breached"),
            ("aaaaaaaaaaaaaa", "breached"),
            ("abcdefghijklm", "breached"),
            ("qwertyuiop123", "breached"),
            ("dabsdabs2026!", "breached"),
            ("tan.wei-is-investing", "email"),
        ];
        for (password, reason) in cases {
            let error = Password::parse(password, &email()).expect_err(password);
            assert_eq!(error.field, "password");
            assert!(error.message.contains(reason), "{password}: {}", error.message);
        }
        assert!(Password::parse(&"x1".repeat(65), &email()).is_err());
        // The length bounds, each with a password strong enough to pass the rest.
        let long = "Kettle-Orbit-19 mauve-piano-42 Orchard road 1987 sunset lamp 77! blue tiger river violet4canyon marmalade-ox Zebra7Lantern quietfox";
        let (shortest, longest): (String, String) = ("Zebra7Lanter".into(), long.chars().take(PASSWORD_MAX).collect());
        assert_eq!((shortest.chars().count(), longest.chars().count()), (PASSWORD_MIN, PASSWORD_MAX));
        assert!(Password::parse(&shortest, &email()).is_ok());
        assert!(Password::parse(&longest, &email()).is_ok());
        let too_long: String = long.chars().take(PASSWORD_MAX).chain("xyz".chars()).collect();
        let error = Password::parse(&too_long, &email()).expect_err("too long");
        assert!(error.message.contains("at most 128"), "{}", error.message);
        assert!(Password::parse("correct horse battery staple", &email()).is_ok());
    }

    /// A login attempt is checked as typed: no policy, no trimming, nothing dropped.
    #[test]
    fn an_attempt_is_handed_on_as_typed() {
        for typed in ["", " spaces around ", "pässwörd"] {
            assert_eq!(Password::attempt(typed).expose(), typed);
        }
    }

    #[test]
    fn a_password_never_prints() {
        assert_eq!(format!("{:?}", Password::attempt("hunter2")), "Password([redacted])");
        let password = Password::parse("correct horse battery staple", &email()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
