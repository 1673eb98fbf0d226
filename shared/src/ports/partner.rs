//! What can go wrong when calling a partner (the bank, the chain, the Custody).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartnerError {
    /// The partner refused the request for good (it will not succeed on retry).
    #[error("refused by the partner: {0}")]
    Refused(String),
    /// No answer in time: the request may or may not have taken effect.
    #[error("the partner did not answer in time")]
    Timeout,
    /// The partner could not be reached or answered with a server error; retry later.
    #[error("the partner is unavailable: {0}")]
    Unavailable(String),
}
