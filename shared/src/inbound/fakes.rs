//! In-memory implementations of the inbound ports and of [`DocumentApi`],
//! for unit tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::ObjectRef;
use super::aws::classify_claim;
use super::ports::{FailureLog, Handoff, ListPage, ListedObject, ObjectInfo, ObjectStore, UploadClaim, UploadLedger};
use super::uploader::upload_status;
use crate::failures::FailureRecord;
use crate::fakes::FakeStore;
use crate::json::Node;
use crate::ports::InfraError;
use crate::recordengine::{DocumentApi, FileBody, Lookup, RecordEngineError, UploadRequest, UploadedDocument};
use crate::records::UploadRecord;

/// One stored object.
#[derive(Debug, Clone, Default)]
pub struct FakeObject {
    pub bytes: Vec<u8>,
    pub version_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// A bucket store in memory. ETags are the MD5-free stand-in `sha256[..32]`.
#[derive(Default)]
pub struct FakeObjectStore {
    pub objects: Mutex<BTreeMap<(String, String), FakeObject>>,
    pub fail: AtomicBool,
    pub heads: AtomicUsize,
    pub opens: AtomicUsize,
    /// Keys per listing page.
    pub page_size: Mutex<Option<usize>>,
}

fn fake_etag(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..32].to_owned()
}

impl FakeObjectStore {
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        self.put_object(
            bucket,
            key,
            FakeObject {
                bytes: bytes.to_vec(),
                ..FakeObject::default()
            },
        );
    }

    pub fn put_object(&self, bucket: &str, key: &str, object: FakeObject) {
        self.objects.lock().unwrap().insert((bucket.into(), key.into()), object);
    }

    pub fn tags(&self, bucket: &str, key: &str) -> BTreeMap<String, String> {
        self.objects
            .lock()
            .unwrap()
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|object| object.tags.clone())
            .unwrap_or_default()
    }

    /// The reference an S3 event would give for a stored object.
    pub fn event_ref(&self, bucket: &str, key: &str) -> ObjectRef {
        let objects = self.objects.lock().unwrap();
        let object = &objects[&(bucket.to_owned(), key.to_owned())];
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            version_id: object.version_id.clone(),
            etag: Some(fake_etag(&object.bytes)),
            size: Some(object.bytes.len() as u64),
            channel: super::Channel::S3,
        }
    }

    fn check(&self, operation: &'static str) -> Result<(), InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(InfraError::new("S3", operation, "injected failure"));
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FakeObjectStore {
    async fn head(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, InfraError> {
        self.check("HeadObject")?;
        self.heads.fetch_add(1, Ordering::SeqCst);
        let objects = self.objects.lock().unwrap();
        let Some(stored) = objects.get(&(object.bucket.clone(), object.key.clone())) else {
            return Ok(None);
        };
        if object.version_id.is_some() && object.version_id != stored.version_id {
            return Ok(None);
        }
        Ok(Some(ObjectInfo {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: stored.version_id.clone(),
            etag: Some(fake_etag(&stored.bytes)),
            size: stored.bytes.len() as u64,
            metadata: stored.metadata.clone(),
        }))
    }

    async fn open(&self, info: &ObjectInfo) -> Result<Option<FileBody>, InfraError> {
        self.check("GetObject")?;
        self.opens.fetch_add(1, Ordering::SeqCst);
        let objects = self.objects.lock().unwrap();
        let Some(stored) = objects.get(&(info.bucket.clone(), info.key.clone())) else {
            return Ok(None);
        };
        if info.etag.as_deref() != Some(fake_etag(&stored.bytes).as_str()) {
            return Ok(None);
        }
        Ok(Some(FileBody::from_bytes(stored.bytes.clone())))
    }

    async fn add_tags(&self, info: &ObjectInfo, tags: &[(&str, String)]) -> Result<(), InfraError> {
        self.check("PutObjectTagging")?;
        let mut objects = self.objects.lock().unwrap();
        if let Some(stored) = objects.get_mut(&(info.bucket.clone(), info.key.clone())) {
            for (name, value) in tags {
                stored.tags.insert((*name).to_owned(), value.clone());
            }
        }
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str, page_token: Option<String>) -> Result<ListPage, InfraError> {
        self.check("ListObjectsV2")?;
        let page_size = self.page_size.lock().unwrap().unwrap_or(1000);
        let objects = self.objects.lock().unwrap();
        let listed: Vec<ListedObject> = objects
            .iter()
            .filter(|((item_bucket, key), _)| item_bucket == bucket && key.starts_with(prefix))
            .filter(|((_, key), _)| page_token.as_ref().is_none_or(|after| key > after))
            .take(page_size + 1)
            .map(|((_, key), object)| ListedObject {
                key: key.clone(),
                etag: Some(fake_etag(&object.bytes)),
                size: object.bytes.len() as u64,
            })
            .collect();
        let next = (listed.len() > page_size).then(|| listed[page_size - 1].key.clone());
        Ok(ListPage {
            objects: listed.into_iter().take(page_size).collect(),
            next,
        })
    }
}

#[async_trait]
impl UploadLedger for FakeStore {
    async fn claim_upload(&self, candidate: &UploadRecord, now_epoch: i64) -> Result<UploadClaim, InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(InfraError::new("DynamoDB", "PutItem", "injected failure"));
        }
        let key = (candidate.pk.clone(), candidate.sk.clone());
        let mut items = self.items.lock().unwrap();
        let current: Option<UploadRecord> = items
            .get(&key)
            .and_then(|value| serde_json::from_value(value.clone()).ok());
        match current {
            Some(current) if current.status != upload_status::FAILED => Ok(classify_claim(current, now_epoch)),
            _ => {
                items.insert(key, serde_json::to_value(candidate).expect("records serialise"));
                Ok(UploadClaim::Claimed)
            }
        }
    }

    async fn take_over_upload(&self, candidate: &UploadRecord, seen: &UploadRecord) -> Result<bool, InfraError> {
        let key = (candidate.pk.clone(), candidate.sk.clone());
        let mut items = self.items.lock().unwrap();
        let current: Option<UploadRecord> = items
            .get(&key)
            .and_then(|value| serde_json::from_value(value.clone()).ok());
        match current {
            Some(current) if current.status == seen.status && current.updated_at == seen.updated_at => {
                items.insert(key, serde_json::to_value(candidate).expect("records serialise"));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn save_upload(&self, record: &UploadRecord) -> Result<(), InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(InfraError::new("DynamoDB", "PutItem", "injected failure"));
        }
        self.put_upload(record);
        Ok(())
    }
}

/// Failure records in memory.
#[derive(Default)]
pub struct FakeFailureLog {
    pub records: Mutex<BTreeMap<String, FailureRecord>>,
}

impl FakeFailureLog {
    pub fn all(&self) -> Vec<FailureRecord> {
        self.records.lock().unwrap().values().cloned().collect()
    }
}

#[async_trait]
impl FailureLog for FakeFailureLog {
    async fn record_failure(&self, record: &FailureRecord) -> Result<(), InfraError> {
        self.records
            .lock()
            .unwrap()
            .insert(record.failure_id.clone(), record.clone());
        Ok(())
    }
}

/// An upload the fake RecordEngine received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedUpload {
    pub document_id: Option<i64>,
    pub filename: String,
    pub content_type: String,
    pub contact_id: i64,
    pub folder_id: i64,
    pub profile_id: Option<i64>,
    pub external_refs: String,
    pub sha256: String,
    pub size: usize,
}

/// What the fake RecordEngine does with the next upload.
#[derive(Debug, Clone)]
pub enum FakeResponse {
    Created,
    /// Stores the document, then reports the given error (an ambiguous timeout).
    CreatedButFail(RecordEngineError),
    Fail(RecordEngineError),
}

/// A RecordEngine in memory: uploads succeed unless a scripted response says otherwise.
#[derive(Default)]
pub struct FakeRecordEngine {
    pub script: Mutex<VecDeque<FakeResponse>>,
    pub lookups: Mutex<VecDeque<Result<Lookup, RecordEngineError>>>,
    pub received: Mutex<Vec<ReceivedUpload>>,
    pub lookup_calls: AtomicUsize,
    next_id: AtomicUsize,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Time each upload takes.
    pub delay: Mutex<Duration>,
}

impl FakeRecordEngine {
    pub fn respond(&self, response: FakeResponse) {
        self.script.lock().unwrap().push_back(response);
    }

    pub fn answer_lookup(&self, answer: Result<Lookup, RecordEngineError>) {
        self.lookups.lock().unwrap().push_back(answer);
    }

    /// Uploads that created a document.
    pub fn documents(&self) -> Vec<ReceivedUpload> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|upload| upload.document_id.is_some())
            .cloned()
            .collect()
    }

    pub fn upload_attempts(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

#[async_trait]
impl DocumentApi for FakeRecordEngine {
    async fn upload(
        &self,
        request: UploadRequest,
        _deadline: Option<Instant>,
    ) -> Result<UploadedDocument, RecordEngineError> {
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);

        let mut bytes = Vec::new();
        let mut stream = request.file.stream;
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(|error| RecordEngineError::Unavailable {
                operation: "upload",
                status: None,
                retry_after: None,
                detail: error.to_string(),
            })?);
        }
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);

        let response = self.script.lock().unwrap().pop_front().unwrap_or(FakeResponse::Created);
        let created = !matches!(response, FakeResponse::Fail(_));
        let document_id = created.then(|| 1000 + self.next_id.fetch_add(1, Ordering::SeqCst) as i64);
        self.received.lock().unwrap().push(ReceivedUpload {
            document_id,
            filename: request.filename.clone(),
            content_type: request.content_type,
            contact_id: request.contact_id,
            folder_id: request.folder_id,
            profile_id: request.profile_id,
            external_refs: request.external_refs,
            sha256: hex::encode(Sha256::digest(&bytes)),
            size: bytes.len(),
        });
        match (response, document_id) {
            (FakeResponse::Created, Some(id)) => Ok(UploadedDocument {
                id,
                filename: Some(request.filename),
                status: Some("New".into()),
                contact_id: Some(request.contact_id),
                folder_id: Some(request.folder_id),
                created_at: None,
            }),
            (FakeResponse::CreatedButFail(error) | FakeResponse::Fail(error), _) => Err(error),
            (FakeResponse::Created, None) => unreachable!("a created document has an id"),
        }
    }

    async fn document_status(&self, document_id: i64) -> Result<Node, RecordEngineError> {
        Node::parse(&format!(r#"{{"id": {document_id}, "status": "New"}}"#)).map_err(|error| {
            RecordEngineError::InvalidResponse {
                operation: "document status",
                status: 200,
                detail: error.to_string(),
            }
        })
    }

    async fn find_by_correlation_key(&self, correlation_key: &str) -> Result<Lookup, RecordEngineError> {
        self.lookup_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(answer) = self.lookups.lock().unwrap().pop_front() {
            return answer;
        }
        // Without a scripted answer, search what was created, as the simulator's filter does.
        let found = self
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|upload| upload.document_id.is_some() && upload.external_refs.contains(correlation_key))
            .filter_map(|upload| upload.document_id)
            .min();
        Ok(found.map_or(Lookup::NotFound, |document_id| Lookup::Found { document_id }))
    }
}

/// Handoffs in memory.
#[derive(Default)]
pub struct FakeHandoff {
    pub queued: Mutex<Vec<ObjectRef>>,
}

#[async_trait]
impl Handoff for FakeHandoff {
    async fn hand_off(&self, objects: &[ObjectRef]) -> Result<usize, InfraError> {
        self.queued.lock().unwrap().extend_from_slice(objects);
        Ok(objects.len())
    }
}
