//! The AWS operations the dispatch engine needs beyond the document table.

use std::time::Duration;

use async_trait::async_trait;

use crate::ports::InfraError;

/// The queue a dispatcher consumes and its dead-letter queue.
#[async_trait]
pub trait DispatchQueue: Send + Sync {
    /// Sets the visibility timeout of a received message: it comes back after `timeout`.
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), InfraError>;

    /// Sends a copy of a message back to the source queue, invisible for `delay` (at most 15 minutes).
    async fn send_delayed(&self, body: &str, delay: Duration, attributes: &[(&str, String)]) -> Result<(), InfraError>;

    /// Sends a message to the dead-letter queue with attributes that explain why.
    async fn send_to_dead_letter(&self, body: &str, attributes: &[(&str, String)]) -> Result<(), InfraError>;
}

/// Reads archived webhook bodies, for messages that carry `payload: null`.
#[async_trait]
pub trait ArchiveReader: Send + Sync {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, InfraError>;
}

/// Reads and writes secret strings: OAuth refresh tokens rotate, so they are written back.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn read(&self, secret_id: &str) -> Result<String, InfraError>;

    /// Stores a new version of the secret (`PutSecretValue`), replacing the current one atomically.
    async fn write(&self, secret_id: &str, value: &str) -> Result<(), InfraError>;
}

/// Sends an email (SES v2 `SendEmail` in the functions).
#[async_trait]
pub trait MailSender: Send + Sync {
    /// Sends a plain-text email; returns the provider's message id.
    async fn send(&self, from: &str, to: &[String], subject: &str, body: &str) -> Result<String, MailError>;
}

/// A failed email, classified for the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// Throttling or a service fault: a later attempt may succeed.
    #[error("{0}")]
    Retryable(String),
    /// The message or an address was rejected (for example an unverified sender).
    #[error("{0}")]
    Rejected(String),
}
