//! Operational alerts: messages on the `alerts` queue that tell a person
//! something failed.
//!
//! The `alerts` queue carries two kinds of message: a [`RoutedMessage`]
//! (an export the routing rules sent to a person, for example a
//! low-confidence document) and an [`OperationalAlert`] (a failure in the
//! bundle itself). [`AlertsQueueMessage::parse`] tells them apart.
//!
//! [`RoutedMessage`]: crate::message::RoutedMessage

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::message::RoutedMessage;

/// Bumped when a field changes meaning.
pub const ALERT_VERSION: u32 = 1;

/// Alert kinds and the parameters each one carries.
pub mod kind {
    /// An object in the inbox was not uploaded: `bucket`, `key`, `reason`
    /// (unsupported type, empty object, unmapped key).
    pub const UPLOAD_REJECTED: &str = "upload_rejected";
    /// An upload failed for good: `bucket`, `key`, `error`.
    pub const UPLOAD_FAILED: &str = "upload_failed";
    /// An upload timed out after the file was sent and RecordEngine may or may
    /// not have the document: `bucket`, `key`, `correlation_key`, `error`.
    pub const UPLOAD_AMBIGUOUS: &str = "upload_ambiguous";
    /// RecordEngine answered 401: the API token was probably regenerated. `error`.
    pub const RECORDENGINE_UNAUTHORIZED: &str = "recordengine_unauthorized";
    /// A routed message failed at its destination: `destination`, `document_id`, `error`, `error_class`.
    pub const DISPATCH_FAILED: &str = "dispatch_failed";
    /// Several failures in one message: `count`, `summary` (one line per failure).
    pub const FAILURE_DIGEST: &str = "failure_digest";
    /// A dead-letter message that could not be read: `source_queue`, `message_id`, `error`.
    pub const UNREADABLE_MESSAGE: &str = "unreadable_message";
}

/// A failure in the bundle, to be rendered for WeCom or email in the
/// configured `ALERT_LOCALE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationalAlert {
    pub alert_version: u32,
    /// One of the constants in [`kind`].
    pub kind: String,
    /// `error` or `warning`.
    pub severity: String,
    /// Values for the alert template, by parameter name. Never a secret.
    pub params: BTreeMap<String, String>,
    /// The failure record this alert is about, if one was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<i64>,
    /// Alerts with the same key are sent once.
    pub dedupe_key: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl OperationalAlert {
    pub fn new(kind: &str, severity: &str, dedupe_key: impl Into<String>) -> Self {
        OperationalAlert {
            alert_version: ALERT_VERSION,
            kind: kind.to_owned(),
            severity: severity.to_owned(),
            params: BTreeMap::new(),
            failure_id: None,
            document_id: None,
            dedupe_key: dedupe_key.into(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    pub fn param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.insert(name.to_owned(), value.into());
        self
    }
}

/// A message on the `alerts` queue.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertsQueueMessage {
    Routed(Box<RoutedMessage>),
    Operational(OperationalAlert),
}

impl AlertsQueueMessage {
    /// Reads a message body: an operational alert carries `alert_version`, a
    /// routed export carries `message_version`.
    pub fn parse(body: &str) -> Result<Self, String> {
        let probe: serde_json::Value =
            serde_json::from_str(body).map_err(|error| format!("alert message is not JSON: {error}"))?;
        if probe.get("alert_version").is_some() {
            return serde_json::from_str(body)
                .map(AlertsQueueMessage::Operational)
                .map_err(|error| format!("invalid operational alert: {error}"));
        }
        serde_json::from_str(body)
            .map(|message| AlertsQueueMessage::Routed(Box::new(message)))
            .map_err(|error| format!("invalid routed message: {error}"))
    }
}
