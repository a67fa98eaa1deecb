//! The SQS message the webhook sends to each destination queue, and the keys
//! that make delivery idempotent.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::json::Node;
use crate::records::Origin;
use crate::rules::{Approval, Decision};

/// Bumped when a field changes meaning; dispatchers reject versions they do not know.
pub const MESSAGE_VERSION: u32 = 1;

/// Longest idempotency key any destination accepts: QuickBooks allows 50
/// characters in `requestid`, Xero 128 in `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_LEN: usize = 40;

/// One routed export on its way to one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutedMessage {
    pub message_version: u32,
    /// RecordEngine's document id.
    pub document_id: i64,
    /// SHA-256 of the export's content without its envelope; see [`export_fingerprint`].
    pub fingerprint: String,
    pub destination: String,
    /// The same for every redelivery and redrive of this export to this destination.
    pub idempotency_key: String,
    pub approval: Approval,
    pub decision: Decision,
    /// Where the document came from, when this bundle uploaded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The archived raw body.
    pub archive: ArchivePointer,
    /// When the webhook received the export (RFC 3339, UTC).
    pub received_at: String,
    /// The export payload as received. `None` when it would push the message
    /// over the SQS size limit; read it from `archive` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Node>,
}

/// An object in the raw-payload archive bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivePointer {
    pub bucket: String,
    pub key: String,
}

/// Hex SHA-256 of an export's canonical content. Two deliveries of the same
/// content share it whatever their envelope timestamp; any change to the
/// extracted data gives a new one.
pub fn export_fingerprint(canonical_content: &str) -> String {
    hex::encode(Sha256::digest(canonical_content.as_bytes()))
}

/// The idempotency key for one export at one destination: 40 hex characters,
/// short enough for QuickBooks' 50-character `requestid`.
pub fn idempotency_key(document_id: i64, fingerprint: &str, destination: &str) -> String {
    let digest = Sha256::digest(format!(
        "recordengine-bridge/v1|{document_id}|{fingerprint}|{destination}"
    ));
    let mut key = hex::encode(digest);
    key.truncate(IDEMPOTENCY_KEY_LEN);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_key_is_stable_and_distinct() {
        let first = idempotency_key(847, "abc", "accounting");

        assert_eq!(first, idempotency_key(847, "abc", "accounting"));
        assert_eq!(first.len(), IDEMPOTENCY_KEY_LEN);
        assert_ne!(first, idempotency_key(847, "abc", "crm"));
        assert_ne!(first, idempotency_key(847, "abd", "accounting"));
        assert_ne!(first, idempotency_key(848, "abc", "accounting"));
    }

    #[test]
    fn message_round_trips() {
        let message = RoutedMessage {
            message_version: MESSAGE_VERSION,
            document_id: 847,
            fingerprint: "f".repeat(64),
            destination: "accounting".into(),
            idempotency_key: idempotency_key(847, "f", "accounting"),
            approval: Approval::Skip,
            decision: Decision {
                ruleset_version: "v".into(),
                rules_fired: vec!["trusted-vendor".into()],
                routes: Vec::new(),
                annotations: vec!["single_line_bill".into()],
            },
            origin: None,
            archive: ArchivePointer {
                bucket: "b".into(),
                key: "raw/2026/12/04/x.json".into(),
            },
            received_at: "2026-12-04T08:00:00Z".into(),
            payload: Some(Node::parse(r#"{"total": 0.30}"#).unwrap()),
        };

        let text = serde_json::to_string(&message).unwrap();
        let back: RoutedMessage = serde_json::from_str(&text).unwrap();

        assert_eq!(back, message);
        assert!(text.contains(r#""total":0.30"#), "numbers keep their text: {text}");
    }
}
