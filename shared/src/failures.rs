//! Failure records: one per message or object that could not be delivered,
//! kept in the failure table so that operators can list, inspect and redrive it.

use serde::{Deserialize, Serialize};

/// Error classes shared by every component.
pub mod error_class {
    /// Retrying may succeed (timeouts, 5xx, throttling); retries ran out.
    pub const RETRYABLE: &str = "retryable";
    /// Retrying cannot succeed without a change (validation, 4xx, bad configuration).
    pub const PERMANENT: &str = "permanent";
    /// The destination's rate limit was exceeded and retries ran out.
    pub const THROTTLED: &str = "throttled";
    /// The outcome is unknown (a timeout after sending); check before retrying.
    pub const AMBIGUOUS: &str = "ambiguous";
    /// The message itself could not be read.
    pub const UNREADABLE: &str = "unreadable";
}

/// Failure record states.
pub mod failure_status {
    pub const OPEN: &str = "open";
    pub const REDRIVEN: &str = "redriven";
    pub const RESOLVED: &str = "resolved";
}

/// One failure. The failure table's partition key is `failure_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub failure_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The component that recorded it: `s3-upload`, `scheduled-upload`, `dlq-alert`, `dispatch-<destination>`.
    pub recorded_by: String,
    /// The destination (`accounting`, …) or `upload` for the inbound path.
    pub destination: String,
    /// One of [`error_class`].
    pub error_class: String,
    /// The last error, in words; never a secret.
    pub error: String,
    /// `open`, `redriven` or `resolved`.
    pub status: String,
    #[serde(default)]
    pub attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_key: Option<String>,
    /// `external_refs` of the document, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_refs: Option<String>,
    /// The queue the message failed on (ARN or URL), or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_queue: Option<String>,
    /// The whole original message body, so the failure can be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The original message attributes, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<String>,
    /// For inbound failures: the S3 object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}
