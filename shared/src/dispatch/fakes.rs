//! In-memory implementations of the dispatch ports, for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::ports::{ArchiveReader, DispatchQueue, MailError, MailSender, SecretStore};
use super::store::VersionedStore;
use crate::fakes::FakeStore;
use crate::ports::InfraError;

fn injected(service: &'static str, operation: &'static str) -> InfraError {
    InfraError::new(service, operation, "injected failure")
}

fn key_of(item: &serde_json::Value) -> Result<(String, String), InfraError> {
    let pk = item.get("pk").and_then(|value| value.as_str());
    let sk = item.get("sk").and_then(|value| value.as_str());
    match (pk, sk) {
        (Some(pk), Some(sk)) => Ok((pk.to_owned(), sk.to_owned())),
        _ => Err(InfraError::new("DynamoDB", "PutItem", "item has no pk and sk")),
    }
}

/// The document-table fake also serves dispatch records, budgets and locks.
#[async_trait]
impl VersionedStore for FakeStore {
    async fn load(&self, pk: &str, sk: &str) -> Result<Option<serde_json::Value>, InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected("DynamoDB", "GetItem"));
        }
        let items = self.items.lock().unwrap();
        Ok(items.get(&(pk.to_owned(), sk.to_owned())).cloned())
    }

    async fn store(&self, item: serde_json::Value, expected: Option<u64>) -> Result<bool, InfraError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(injected("DynamoDB", "PutItem"));
        }
        let key = key_of(&item)?;
        let mut items = self.items.lock().unwrap();
        let current = items
            .get(&key)
            .map(|existing| existing.get("version").and_then(|value| value.as_u64()).unwrap_or(0));
        if current != expected {
            return Ok(false);
        }
        items.insert(key, item);
        Ok(true)
    }
}

/// A message the engine sent: body, delay and attributes.
pub type SentMessage = (String, Duration, BTreeMap<String, String>);

/// An email the fake mailer accepted: from, to, subject and body.
pub type SentEmail = (String, Vec<String>, String, String);

/// A queue pair that records what the engine requested of it.
#[derive(Default)]
pub struct FakeDispatchQueue {
    pub visibility: Mutex<Vec<(String, Duration)>>,
    pub delayed: Mutex<Vec<SentMessage>>,
    pub dead_letters: Mutex<Vec<(String, BTreeMap<String, String>)>>,
    pub fail_dead_letter: AtomicBool,
}

impl FakeDispatchQueue {
    /// Returns the visibility timeout last set for a receipt handle.
    pub fn visibility_of(&self, receipt_handle: &str) -> Option<Duration> {
        self.visibility
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(handle, _)| handle == receipt_handle)
            .map(|(_, timeout)| *timeout)
    }
}

fn to_map(attributes: &[(&str, String)]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

#[async_trait]
impl DispatchQueue for FakeDispatchQueue {
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), InfraError> {
        self.visibility
            .lock()
            .unwrap()
            .push((receipt_handle.to_owned(), timeout));
        Ok(())
    }

    async fn send_delayed(&self, body: &str, delay: Duration, attributes: &[(&str, String)]) -> Result<(), InfraError> {
        self.delayed
            .lock()
            .unwrap()
            .push((body.to_owned(), delay, to_map(attributes)));
        Ok(())
    }

    async fn send_to_dead_letter(&self, body: &str, attributes: &[(&str, String)]) -> Result<(), InfraError> {
        if self.fail_dead_letter.load(Ordering::SeqCst) {
            return Err(injected("SQS", "SendMessage"));
        }
        self.dead_letters
            .lock()
            .unwrap()
            .push((body.to_owned(), to_map(attributes)));
        Ok(())
    }
}

/// Archived bodies by bucket and key.
#[derive(Default)]
pub struct FakeArchiveReader {
    pub objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

#[async_trait]
impl ArchiveReader for FakeArchiveReader {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, InfraError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned())
    }
}

/// Secrets in memory, counting writes.
#[derive(Default)]
pub struct FakeSecretStore {
    pub values: Mutex<BTreeMap<String, String>>,
    pub writes: AtomicUsize,
}

impl FakeSecretStore {
    pub fn set(&self, secret_id: &str, value: &str) {
        self.values
            .lock()
            .unwrap()
            .insert(secret_id.to_owned(), value.to_owned());
    }

    pub fn value(&self, secret_id: &str) -> Option<String> {
        self.values.lock().unwrap().get(secret_id).cloned()
    }
}

#[async_trait]
impl SecretStore for FakeSecretStore {
    async fn read(&self, secret_id: &str) -> Result<String, InfraError> {
        self.value(secret_id)
            .ok_or_else(|| InfraError::new("Secrets Manager", "GetSecretValue", format!("no secret {secret_id}")))
    }

    async fn write(&self, secret_id: &str, value: &str) -> Result<(), InfraError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.set(secret_id, value);
        Ok(())
    }
}

/// Emails in memory.
#[derive(Default)]
pub struct FakeMailer {
    pub sent: Mutex<Vec<SentEmail>>,
    pub reject: AtomicBool,
}

#[async_trait]
impl MailSender for FakeMailer {
    async fn send(&self, from: &str, to: &[String], subject: &str, body: &str) -> Result<String, MailError> {
        if self.reject.load(Ordering::SeqCst) {
            return Err(MailError::Rejected("Email address is not verified".into()));
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push((from.to_owned(), to.to_vec(), subject.to_owned(), body.to_owned()));
        Ok(format!("fake-email-{}", sent.len()))
    }
}
