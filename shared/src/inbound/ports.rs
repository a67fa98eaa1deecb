//! Ports of the inbound path, beside the document table's [`DocumentStore`]
//! and the alerts queue's [`MessageQueue`].
//!
//! [`DocumentStore`]: crate::ports::DocumentStore
//! [`MessageQueue`]: crate::ports::MessageQueue

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::ObjectRef;
use crate::failures::FailureRecord;
use crate::ports::InfraError;
use crate::recordengine::FileBody;
use crate::records::UploadRecord;

/// What S3 returns about one object version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    /// `None` in a bucket without versioning.
    pub version_id: Option<String>,
    /// Without quotes.
    pub etag: Option<String>,
    pub size: u64,
    /// User metadata without the `x-amz-meta-` prefix, keys in lower case.
    pub metadata: BTreeMap<String, String>,
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub etag: Option<String>,
    pub size: u64,
}

/// One page of a listing and the token of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next: Option<String>,
}

/// The inbox bucket.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Reads an object's size, ETag, version and metadata; `None` when it is gone.
    async fn head(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, InfraError>;

    /// Opens exactly the version `info` describes: by version id, or by ETag
    /// (`If-Match`) without versioning. `None` when that version is gone or
    /// was overwritten.
    async fn open(&self, info: &ObjectInfo) -> Result<Option<FileBody>, InfraError>;

    /// Adds tags to the object version, keeping its other tags.
    async fn add_tags(&self, info: &ObjectInfo, tags: &[(&str, String)]) -> Result<(), InfraError>;

    /// Lists one page of keys under `prefix`.
    async fn list(&self, bucket: &str, prefix: &str, page_token: Option<String>) -> Result<ListPage, InfraError>;
}

/// The outcome of claiming an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadClaim {
    /// This caller uploads; the candidate record was written.
    Claimed,
    /// The object version was uploaded before.
    Uploaded(Box<UploadRecord>),
    /// Another caller holds an unexpired `uploading` lease.
    InProgress(Box<UploadRecord>),
    /// An earlier upload timed out after sending (`ambiguous`), or its caller
    /// died while holding the lease: RecordEngine may have the document.
    Uncertain(Box<UploadRecord>),
}

/// Upload records in the document table (`ref#<correlation key>`, `document`).
#[async_trait]
pub trait UploadLedger: Send + Sync {
    /// Writes `candidate` (status `uploading`) unless the record exists in
    /// any state but `failed`.
    async fn claim_upload(&self, candidate: &UploadRecord, now_epoch: i64) -> Result<UploadClaim, InfraError>;

    /// Takes over an uncertain record after a lookup showed RecordEngine has
    /// no such document. Succeeds only if the record is still exactly as
    /// `seen`, so that two callers cannot both re-upload.
    async fn take_over_upload(&self, candidate: &UploadRecord, seen: &UploadRecord) -> Result<bool, InfraError>;

    /// Overwrites the record (the holder of a claim recording the outcome).
    async fn save_upload(&self, record: &UploadRecord) -> Result<(), InfraError>;
}

/// The failure table.
#[async_trait]
pub trait FailureLog: Send + Sync {
    /// Stores a failure record, replacing one with the same `failure_id`.
    async fn record_failure(&self, record: &FailureRecord) -> Result<(), InfraError>;
}

/// Where the scheduled run leaves the objects it has no time for.
#[async_trait]
pub trait Handoff: Send + Sync {
    /// Queues upload requests for `objects`; returns how many were queued.
    async fn hand_off(&self, objects: &[ObjectRef]) -> Result<usize, InfraError>;
}
