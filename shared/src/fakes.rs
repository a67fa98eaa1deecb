//! In-memory implementations of the ports, for unit tests and benchmarks.
//!
//! Each fake can be told to fail, so that tests can check what a handler
//! does when an AWS service is down.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;

use crate::ports::{DocumentStore, DocumentView, ExportClaim, InfraError, MessageQueue, RawArchive, SecretSource};
use crate::records::{
    DOCUMENT_SK, DocumentRecord, ExportRecord, TimelineEntry, UploadRecord, document_pk, export_sk, export_status,
    reference_pk,
};
use crate::sweep::{ArchiveListing, TableScan};

fn unavailable(service: &'static str, operation: &'static str) -> InfraError {
    InfraError::new(service, operation, "injected failure")
}

/// An archive in memory.
#[derive(Default)]
pub struct FakeArchive {
    pub objects: Mutex<BTreeMap<String, Vec<u8>>>,
    pub fail: AtomicBool,
}

#[async_trait]
impl RawArchive for FakeArchive {
    fn bucket(&self) -> &str {
        "fake-archive"
    }

    async fn put(&self, key: &str, body: &[u8]) -> Result<(), InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(unavailable("S3", "PutObject"));
        }
        self.objects.lock().unwrap().insert(key.to_owned(), body.to_vec());
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(unavailable("S3", "GetObject"));
        }
        Ok(self.objects.lock().unwrap().get(key).cloned())
    }
}

/// A document table in memory. Items are kept as JSON so that any record type fits.
#[derive(Default)]
pub struct FakeStore {
    pub items: Mutex<BTreeMap<(String, String), serde_json::Value>>,
    pub fail: AtomicBool,
}

impl FakeStore {
    fn check(&self, operation: &'static str) -> Result<(), InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(unavailable("DynamoDB", operation));
        }
        Ok(())
    }

    fn get<T: serde::de::DeserializeOwned>(&self, pk: String, sk: &str) -> Option<T> {
        let items = self.items.lock().unwrap();
        let value = items.get(&(pk, sk.to_owned()))?;
        serde_json::from_value(value.clone()).ok()
    }

    fn put<T: serde::Serialize>(&self, pk: &str, sk: &str, record: &T) {
        let value = serde_json::to_value(record).expect("records serialise");
        self.items.lock().unwrap().insert((pk.to_owned(), sk.to_owned()), value);
    }

    /// Stores an upload record, as the uploader does before it uploads.
    pub fn put_upload(&self, record: &UploadRecord) {
        self.put(&record.pk, &record.sk, record);
    }

    /// Every timeline entry of a document, oldest first.
    pub fn timeline(&self, document_id: i64) -> Vec<TimelineEntry> {
        let pk = document_pk(document_id);
        let items = self.items.lock().unwrap();
        items
            .iter()
            .filter(|((item_pk, sk), _)| item_pk == &pk && sk.starts_with("event#"))
            .filter_map(|(_, value)| serde_json::from_value(value.clone()).ok())
            .collect()
    }
}

#[async_trait]
impl DocumentStore for FakeStore {
    async fn get_document(&self, document_id: i64) -> Result<Option<DocumentRecord>, InfraError> {
        self.check("GetItem")?;
        Ok(self.get(document_pk(document_id), DOCUMENT_SK))
    }

    async fn put_document(&self, record: &DocumentRecord) -> Result<(), InfraError> {
        self.check("PutItem")?;
        self.put(&record.pk, &record.sk, record);
        Ok(())
    }

    async fn get_upload(&self, correlation_key: &str) -> Result<Option<UploadRecord>, InfraError> {
        self.check("GetItem")?;
        Ok(self.get(reference_pk(correlation_key), DOCUMENT_SK))
    }

    async fn claim_export(&self, candidate: &ExportRecord, now_epoch: i64) -> Result<ExportClaim, InfraError> {
        self.check("PutItem")?;
        let key = (candidate.pk.clone(), candidate.sk.clone());
        let mut items = self.items.lock().unwrap();
        let current: Option<ExportRecord> = items
            .get(&key)
            .and_then(|value| serde_json::from_value(value.clone()).ok());

        let claimable = match &current {
            None => true,
            Some(record) if record.status == export_status::UNROUTED => true,
            Some(record) if record.status == export_status::ROUTING => record.lease_until < now_epoch,
            Some(_) => false,
        };
        match current {
            Some(record) if !claimable && record.status == export_status::ROUTED => {
                Ok(ExportClaim::AlreadyRouted(Box::new(record)))
            }
            Some(record) if !claimable => Ok(ExportClaim::InProgress(Box::new(record))),
            earlier => {
                // Same bookkeeping as the DynamoDB adapter: count deliveries, keep the first arrival.
                let mut claimed = candidate.clone();
                if let Some(earlier) = earlier {
                    claimed.deliveries = earlier.deliveries + 1;
                    claimed.received_at = earlier.received_at;
                }
                items.insert(key, serde_json::to_value(&claimed).expect("records serialise"));
                Ok(ExportClaim::Claimed(Box::new(claimed)))
            }
        }
    }

    async fn finish_export(&self, record: &ExportRecord) -> Result<(), InfraError> {
        self.check("PutItem")?;
        self.put(&record.pk, &record.sk, record);
        Ok(())
    }

    async fn get_export(&self, document_id: i64, fingerprint: &str) -> Result<Option<ExportRecord>, InfraError> {
        self.check("GetItem")?;
        Ok(self.get(document_pk(document_id), &export_sk(fingerprint)))
    }

    async fn append_timeline(&self, entry: &TimelineEntry) -> Result<(), InfraError> {
        self.check("PutItem")?;
        self.put(&entry.pk, &entry.sk, entry);
        Ok(())
    }

    async fn document_view(&self, document_id: i64) -> Result<DocumentView, InfraError> {
        self.check("Query")?;
        let pk = document_pk(document_id);
        let items = self.items.lock().unwrap();
        let mut view = DocumentView::default();
        for ((item_pk, sk), value) in items.iter() {
            if item_pk != &pk {
                continue;
            }
            if sk == DOCUMENT_SK {
                view.document = serde_json::from_value(value.clone()).ok();
            } else if sk.starts_with("export#") {
                view.exports.extend(serde_json::from_value(value.clone()).ok());
            } else if sk.starts_with("event#") {
                view.timeline.extend(serde_json::from_value(value.clone()).ok());
            }
        }
        Ok(view)
    }
}

/// Sent message bodies by destination.
#[derive(Default)]
pub struct FakeQueues {
    pub sent: Mutex<Vec<(String, String)>>,
    pub fail: AtomicBool,
}

impl FakeQueues {
    /// Messages sent to `destination`.
    pub fn bodies(&self, destination: &str) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| name == destination)
            .map(|(_, body)| body.clone())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

#[async_trait]
impl MessageQueue for FakeQueues {
    async fn send(&self, destination: &str, body: &str, _attributes: &[(&str, String)]) -> Result<String, InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(unavailable("SQS", "SendMessage"));
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push((destination.to_owned(), body.to_owned()));
        Ok(format!("fake-{}", sent.len()))
    }
}

/// Secrets in memory, counting reads.
#[derive(Default)]
pub struct FakeSecrets {
    values: Mutex<HashMap<String, String>>,
    reads: AtomicUsize,
}

impl FakeSecrets {
    pub fn set(&self, secret_id: &str, value: &str) {
        self.values
            .lock()
            .unwrap()
            .insert(secret_id.to_owned(), value.to_owned());
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SecretSource for FakeSecrets {
    async fn secret_string(&self, secret_id: &str) -> Result<String, InfraError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.values
            .lock()
            .unwrap()
            .get(secret_id)
            .cloned()
            .ok_or_else(|| InfraError::new("Secrets Manager", "GetSecretValue", format!("no secret {secret_id}")))
    }
}

#[async_trait]
impl ArchiveListing for FakeArchive {
    async fn list_keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(unavailable("S3", "ListObjectsV2"));
        }
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .keys()
            .filter(|key| key.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl TableScan for FakeStore {
    async fn scan_prefix(&self, pk_prefix: &str, sk_prefix: &str) -> Result<Vec<serde_json::Value>, InfraError> {
        self.check("Scan")?;
        let items = self.items.lock().unwrap();
        Ok(items
            .iter()
            .filter(|((pk, sk), _)| pk.starts_with(pk_prefix) && sk.starts_with(sk_prefix))
            .map(|(_, value)| value.clone())
            .collect())
    }

    async fn get_json(&self, pk: &str, sk: &str) -> Result<Option<serde_json::Value>, InfraError> {
        self.check("GetItem")?;
        Ok(self.items.lock().unwrap().get(&(pk.to_owned(), sk.to_owned())).cloned())
    }
}
