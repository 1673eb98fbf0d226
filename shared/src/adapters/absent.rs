//! Ports a function was not given: every call is refused, so code that reaches for a key,
//! a queue or a mailer its function should not hold fails loudly instead of finding one.

use std::time::Duration;

use async_trait::async_trait;

use crate::ports::envelope::EncryptionContext;
use crate::ports::keyring::{DataKey, KeyringError};
use crate::ports::mailer::{Email, MailError};
use crate::ports::queue::{QueueError, QueueName, Received};
use crate::ports::{Keyring, Mailer, Queue};

/// Why a port is absent: what the function was not given.
#[derive(Debug, thiserror::Error)]
#[error("this function holds no {0}")]
pub struct Absent(pub &'static str);

/// The keyring of a function given no key (`what` names the variable it would come from).
pub struct NoKeyring(pub &'static str);

#[async_trait]
impl Keyring for NoKeyring {
    async fn generate_data_key(&self, _: &EncryptionContext) -> Result<DataKey, KeyringError> {
        Err(KeyringError::unavailable(Absent(self.0)))
    }

    async fn unwrap_data_key(&self, _: &str, _: &[u8], _: &EncryptionContext) -> Result<[u8; 32], KeyringError> {
        Err(KeyringError::unavailable(Absent(self.0)))
    }

    async fn rotate(&self) -> Result<(), KeyringError> {
        Err(KeyringError::unavailable(Absent(self.0)))
    }

    async fn rewrap(&self, _: &str, _: &[u8], _: &EncryptionContext) -> Result<(String, Vec<u8>), KeyringError> {
        Err(KeyringError::unavailable(Absent(self.0)))
    }
}

/// The queues of a function that sends to and reads from none itself.
pub struct NoQueue;

#[async_trait]
impl Queue for NoQueue {
    async fn send(&self, _: QueueName, _: Vec<String>) -> Result<Vec<String>, QueueError> {
        Err(QueueError::unavailable(Absent("queue")))
    }

    async fn receive(&self, _: QueueName, _: usize, _: Duration) -> Result<Vec<Received>, QueueError> {
        Err(QueueError::unavailable(Absent("queue")))
    }

    async fn complete(&self, _: QueueName, _: &[String]) -> Result<(), QueueError> {
        Err(QueueError::unavailable(Absent("queue")))
    }

    async fn release(&self, _: QueueName, _: &[String]) -> Result<(), QueueError> {
        Err(QueueError::unavailable(Absent("queue")))
    }

    async fn dead_letter(&self, _: QueueName, _: Vec<String>) -> Result<(), QueueError> {
        Err(QueueError::unavailable(Absent("queue")))
    }

    async fn dead_letters(&self, _: QueueName, _: usize) -> Result<Vec<Received>, QueueError> {
        Err(QueueError::unavailable(Absent("queue")))
    }
}

/// The mailer of a function that sends no email.
pub struct NoMailer;

#[async_trait]
impl Mailer for NoMailer {
    async fn send(&self, _: &Email) -> Result<String, MailError> {
        Err(MailError::unavailable(Absent("mailer")))
    }
}
