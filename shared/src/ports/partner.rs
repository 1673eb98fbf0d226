//! What can go wrong when calling a partner (the bank, the chain, the Custody), sorted by
//! what the caller may do next: only [`PartnerError::Refused`] says the partner will not
//! act, so only it may release money held for the call.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartnerError {
    /// A business refusal (`422`): the partner will not do it, now or on retry.
    #[error("refused by the partner: {0}")]
    Refused(String),
    /// The reference is taken (`409`): by the same request still in flight or already
    /// done, or by another one. Look the reference up before anything else.
    #[error("the partner holds the reference already: {0}")]
    Conflict(String),
    /// The partner did not take the request as sent (another `4xx`: malformed, not
    /// authenticated, not found). Sending it again unchanged will not help, but nothing
    /// was done and nobody said no: it needs an operator, and money stays held.
    #[error("the partner could not take the request: {0}")]
    Rejected(String),
    /// No answer in time: the request may or may not have taken effect.
    #[error("the partner did not answer in time")]
    Timeout,
    /// The partner asked to slow down (`429`); retry later.
    #[error("the partner is throttling requests")]
    Throttled,
    /// The partner could not be reached or answered `408` or a server error; retry later.
    #[error("the partner is unavailable: {0}")]
    Unavailable(String),
}

impl PartnerError {
    /// Sending the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::Throttled | Self::Unavailable(_))
    }

    /// The kind of an HTTP status that is not a success.
    pub fn from_status(status: u16, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        match status {
            422 => Self::Refused(detail),
            409 => Self::Conflict(detail),
            429 => Self::Throttled,
            408 => Self::Timeout,
            400..=499 => Self::Rejected(detail),
            _ => Self::Unavailable(detail),
        }
    }

    /// The HTTP status a partner answers this with (the simulators behind their contracts).
    pub fn status(&self) -> u16 {
        match self {
            Self::Refused(_) => 422,
            Self::Conflict(_) => 409,
            Self::Rejected(_) => 400,
            Self::Timeout => 504,
            Self::Throttled => 429,
            Self::Unavailable(_) => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PartnerError;

    #[test]
    fn every_status_maps_to_a_kind_that_answers_the_same_status_class() {
        for status in 400..600 {
            let kind = PartnerError::from_status(status, "x");
            let retryable = matches!(status, 408 | 429) || status >= 500;
            assert_eq!(kind.is_retryable(), retryable, "{status}: {kind:?}");
            assert_eq!(matches!(kind, PartnerError::Refused(_)), status == 422, "{status}");
            assert_eq!(PartnerError::from_status(kind.status(), "x").is_retryable(), retryable, "{status}");
        }
    }
}
