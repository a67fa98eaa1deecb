//! Narrow interfaces to the AWS services the handlers use.
//!
//! Handlers are generic over these traits: the Lambda functions plug in the
//! SDK adapters from [`crate::aws`], unit tests plug in the in-memory fakes
//! from [`crate::fakes`].

use async_trait::async_trait;

use crate::records::{DocumentRecord, ExportRecord, TimelineEntry, UploadRecord};

/// A failed call to an AWS service. The webhook answers 503 for these, so
/// the sender may retry; the payload is already archived or nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {operation} failed: {detail}")]
pub struct InfraError {
    pub service: &'static str,
    pub operation: &'static str,
    pub detail: String,
}

impl InfraError {
    pub fn new(service: &'static str, operation: &'static str, detail: impl Into<String>) -> Self {
        InfraError {
            service,
            operation,
            detail: detail.into(),
        }
    }
}

/// Stores raw webhook bodies byte for byte.
#[async_trait]
pub trait RawArchive: Send + Sync {
    /// The bucket name, recorded in messages so that a dispatcher can read a large payload.
    fn bucket(&self) -> &str;
    async fn put(&self, key: &str, body: &[u8]) -> Result<(), InfraError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, InfraError>;
}

/// The outcome of trying to claim an export for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportClaim {
    /// This delivery routes the export; the record as written (with the delivery count).
    Claimed(Box<ExportRecord>),
    /// The export was routed before: a duplicate delivery.
    AlreadyRouted(Box<ExportRecord>),
    /// Another delivery holds an unexpired claim on it right now.
    InProgress(Box<ExportRecord>),
}

/// A document with everything stored under it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocumentView {
    pub document: Option<DocumentRecord>,
    pub exports: Vec<ExportRecord>,
    pub timeline: Vec<TimelineEntry>,
}

/// The document table.
#[async_trait]
pub trait DocumentStore: Send + Sync {
    async fn get_document(&self, document_id: i64) -> Result<Option<DocumentRecord>, InfraError>;
    async fn put_document(&self, record: &DocumentRecord) -> Result<(), InfraError>;
    async fn get_upload(&self, correlation_key: &str) -> Result<Option<UploadRecord>, InfraError>;

    /// Claims an export for routing unless it is routed already or another
    /// delivery holds an unexpired claim. `candidate` is written on success.
    async fn claim_export(&self, candidate: &ExportRecord, now_epoch: i64) -> Result<ExportClaim, InfraError>;

    /// Records the end of routing: `routed` with its routes, or `unrouted` with the error.
    async fn finish_export(&self, record: &ExportRecord) -> Result<(), InfraError>;

    async fn get_export(&self, document_id: i64, fingerprint: &str) -> Result<Option<ExportRecord>, InfraError>;

    async fn append_timeline(&self, entry: &TimelineEntry) -> Result<(), InfraError>;

    /// The document record, its exports and its timeline (oldest first).
    async fn document_view(&self, document_id: i64) -> Result<DocumentView, InfraError>;
}

/// Sends messages to the destination queues.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    /// Sends `body` to the queue of `destination` and returns the SQS message id.
    async fn send(&self, destination: &str, body: &str, attributes: &[(&str, String)]) -> Result<String, InfraError>;
}

/// Reads secret strings.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn secret_string(&self, secret_id: &str) -> Result<String, InfraError>;
}
