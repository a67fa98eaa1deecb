//! Failure classes of a delivery, and the engine's action for each.

use std::time::Duration;

use crate::failures::error_class;
use crate::ports::InfraError;

/// A failed delivery, classified by what a retry can achieve.
///
/// The engine maps each class to an SQS action: `Retryable` and `Ambiguous`
/// delay the message with `ChangeMessageVisibility`, `Throttled` waits for the
/// rate budget without counting an attempt, `Permanent` sends the message to
/// the destination's dead-letter queue at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// Nothing was created and a later attempt may succeed (5xx, connection refused).
    #[error("{reason}")]
    Retryable {
        reason: String,
        /// The destination's `Retry-After`, or a minimum wait it documents.
        retry_after: Option<Duration>,
    },
    /// The request may have reached the destination (a timeout after sending).
    /// The next attempt must look the object up before creating it again.
    #[error("{reason}")]
    Ambiguous { reason: String },
    /// A rate limit was hit: wait `retry_after`, which is not a failed attempt.
    #[error("{reason}")]
    Throttled { reason: String, retry_after: Duration },
    /// Retrying cannot succeed without a change (validation, bad configuration, unknown record).
    #[error("{reason}")]
    Permanent { reason: String },
}

impl DispatchError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        DispatchError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(reason: impl Into<String>, retry_after: Duration) -> Self {
        DispatchError::Retryable {
            reason: reason.into(),
            retry_after: Some(retry_after),
        }
    }

    pub fn ambiguous(reason: impl Into<String>) -> Self {
        DispatchError::Ambiguous { reason: reason.into() }
    }

    pub fn throttled(reason: impl Into<String>, retry_after: Duration) -> Self {
        DispatchError::Throttled {
            reason: reason.into(),
            retry_after,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        DispatchError::Permanent { reason: reason.into() }
    }

    /// Returns the error class stored in dispatch and failure records (see [`error_class`]).
    pub fn class(&self) -> &'static str {
        match self {
            DispatchError::Retryable { .. } => error_class::RETRYABLE,
            DispatchError::Ambiguous { .. } => error_class::AMBIGUOUS,
            DispatchError::Throttled { .. } => error_class::THROTTLED,
            DispatchError::Permanent { .. } => error_class::PERMANENT,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            DispatchError::Retryable { reason, .. }
            | DispatchError::Ambiguous { reason }
            | DispatchError::Throttled { reason, .. }
            | DispatchError::Permanent { reason } => reason,
        }
    }

    /// Prefixes the reason with context, keeping the class.
    pub fn context(self, prefix: &str) -> Self {
        let wrap = |reason: String| format!("{prefix}: {reason}");
        match self {
            DispatchError::Retryable { reason, retry_after } => DispatchError::Retryable {
                reason: wrap(reason),
                retry_after,
            },
            DispatchError::Ambiguous { reason } => DispatchError::Ambiguous { reason: wrap(reason) },
            DispatchError::Throttled { reason, retry_after } => DispatchError::Throttled {
                reason: wrap(reason),
                retry_after,
            },
            DispatchError::Permanent { reason } => DispatchError::Permanent { reason: wrap(reason) },
        }
    }
}

impl From<InfraError> for DispatchError {
    /// Converts a failed AWS call of the bundle itself, which SQS retries later.
    fn from(error: InfraError) -> Self {
        DispatchError::retryable(error.to_string())
    }
}
