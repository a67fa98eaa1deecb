//! Items of the document table and the names of their keys.
//!
//! The document table (partition key `pk`, sort key `sk`, TTL attribute
//! `expires_at`) holds, per RecordEngine document:
//!
//! | pk | sk | item |
//! |---|---|---|
//! | `doc#<id>` | `document` | [`DocumentRecord`] |
//! | `doc#<id>` | `export#<fingerprint>` | [`ExportRecord`], one per distinct export |
//! | `doc#<id>` | `event#<time>#<suffix>` | [`TimelineEntry`] |
//! | `ref#<correlation key>` | `document` | [`UploadRecord`], written before the upload |
//!
//! One `Query` on `doc#<id>` therefore returns a document with its exports and timeline.

use serde::{Deserialize, Serialize};

/// The top-level `external_refs` key under which this bundle stores its own
/// correlation key. Other integrations' keys are left alone.
pub const EXTERNAL_REFS_KEY: &str = "recordengine_bridge";

/// Sort key of a [`DocumentRecord`] and of an [`UploadRecord`].
pub const DOCUMENT_SK: &str = "document";

pub fn document_pk(document_id: i64) -> String {
    format!("doc#{document_id}")
}

pub fn export_sk(fingerprint: &str) -> String {
    format!("export#{fingerprint}")
}

pub fn reference_pk(correlation_key: &str) -> String {
    format!("ref#{correlation_key}")
}

/// Where an uploaded document came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Origin {
    /// Our key in `external_refs.recordengine_bridge.record_id`.
    pub correlation_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<String>,
    /// `s3` for S3 drops, `schedule` for the morning run, `bridgectl` for manual uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// What this bundle knows about one RecordEngine document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub pk: String,
    pub sk: String,
    pub document_id: i64,
    /// Present when this bundle uploaded the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The `external_refs` object sent with the upload, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_refs_sent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The latest lifecycle step: `uploaded`, `exported`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_export_at: Option<String>,
}

/// State of an upload, keyed by correlation key before RecordEngine assigns an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub pk: String,
    pub sk: String,
    pub origin: Origin,
    /// `uploading`, `uploaded`, `ambiguous` (the outcome is unknown) or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<i64>,
    /// Until when the current `uploading` claim holds (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_refs_sent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub updated_at: String,
}

/// Routing state of one distinct export of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub pk: String,
    pub sk: String,
    pub document_id: i64,
    pub fingerprint: String,
    /// `routing` while a delivery holds the claim, then `routed` or `unrouted`.
    pub status: String,
    /// Until when a `routing` claim holds (epoch seconds); after that a retry may take over.
    pub lease_until: i64,
    pub archive_bucket: String,
    pub archive_key: String,
    pub received_at: String,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_fired: Option<Vec<String>>,
    #[serde(default)]
    pub deliveries: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at: String,
}

/// Export record states.
pub mod export_status {
    pub const ROUTING: &str = "routing";
    pub const ROUTED: &str = "routed";
    pub const UNROUTED: &str = "unrouted";
}

/// One step in a document's life, shown by `bridgectl doc` and `GET /documents/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub pk: String,
    pub sk: String,
    /// RFC 3339, UTC.
    pub at: String,
    /// `uploaded`, `upload_failed`, `exported`, `duplicate_export`, `routed`,
    /// `delivered`, `dispatch_failed`, `dead_lettered`, `redriven`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Human-readable detail; never a secret.
    pub detail: String,
    /// Structured detail as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl TimelineEntry {
    /// Builds an entry whose sort key orders by time and stays unique.
    pub fn new(document_id: i64, at: chrono::DateTime<chrono::Utc>, kind: &str, detail: impl Into<String>) -> Self {
        let suffix: u32 = rand::random();
        TimelineEntry {
            pk: document_pk(document_id),
            sk: format!("event#{}#{suffix:08x}", at.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: kind.to_owned(),
            destination: None,
            detail: detail.into(),
            data: None,
        }
    }

    pub fn with_destination(mut self, destination: &str) -> Self {
        self.destination = Some(destination.to_owned());
        self
    }

    pub fn with_data(mut self, data: &impl Serialize) -> Self {
        self.data = serde_json::to_string(data).ok();
        self
    }
}
