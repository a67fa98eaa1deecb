//! The failure table (partition key `failure_id`): one item per failed
//! message, read and written by the dead-letter function and `bridgectl dlq`.
//!
//! An item is a [`FailureRecord`] plus two attributes of its own:
//! `expires_at` (the table's TTL attribute, epoch seconds) and `alert_state`
//! (`pending` until an alert or digest naming the failure was sent, then `sent`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use bridge_shared::aws::{from_item, sdk_error_text, to_item};
use bridge_shared::failures::{FailureRecord, failure_status};
use bridge_shared::ports::InfraError;
use serde::{Deserialize, Serialize};

/// Alert states of a stored failure.
pub mod alert_state {
    /// No alert naming the failure has been sent yet.
    pub const PENDING: &str = "pending";
    /// An alert or digest naming the failure was sent.
    pub const SENT: &str = "sent";
}

/// A failure record as stored, with the table's own attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFailure {
    #[serde(flatten)]
    pub record: FailureRecord,
    /// When DynamoDB may delete the item (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// One of [`alert_state`]; absent on records written by other components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_state: Option<String>,
}

impl StoredFailure {
    pub fn new(record: FailureRecord) -> Self {
        StoredFailure {
            record,
            expires_at: None,
            alert_state: None,
        }
    }
}

/// Reads and writes failure records.
#[async_trait]
pub trait FailureStore: Send + Sync {
    /// Stores a new record. Returns `false`, changing nothing, when a record
    /// with the same `failure_id` exists.
    async fn insert_new(&self, failure: &StoredFailure) -> Result<bool, InfraError>;

    async fn get(&self, failure_id: &str) -> Result<Option<StoredFailure>, InfraError>;

    /// Returns every record in the table.
    async fn list(&self) -> Result<Vec<StoredFailure>, InfraError>;

    /// Moves an `open` record to `redriven` at `at` (RFC 3339). Returns
    /// `false` when the record is missing or not `open`, so that two
    /// concurrent redrives cannot both claim it.
    async fn mark_redriven(&self, failure_id: &str, at: &str) -> Result<bool, InfraError>;

    /// Moves a `redriven` record back to `open` after its message could not
    /// be sent; `at` must be the time [`FailureStore::mark_redriven`] wrote.
    async fn reopen(&self, failure_id: &str, at: &str, error: &str) -> Result<bool, InfraError>;

    /// Sets `alert_state`.
    async fn set_alert_state(&self, failure_id: &str, state: &str) -> Result<(), InfraError>;
}

/// The failure table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoFailureStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoFailureStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoFailureStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(failure_id: &str) -> (String, AttributeValue) {
        ("failure_id".to_owned(), AttributeValue::S(failure_id.to_owned()))
    }
}

fn is_condition_failure<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    match error {
        aws_sdk_dynamodb::error::SdkError::ServiceError(service) => {
            service.err().code() == Some("ConditionalCheckFailedException")
        }
        _ => false,
    }
}

#[async_trait]
impl FailureStore for DynamoFailureStore {
    async fn insert_new(&self, failure: &StoredFailure) -> Result<bool, InfraError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(failure, "PutItem")?))
            .condition_expression("attribute_not_exists(failure_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(InfraError::new("DynamoDB", "PutItem", sdk_error_text(&error))),
        }
    }

    async fn get(&self, failure_id: &str) -> Result<Option<StoredFailure>, InfraError> {
        let (name, value) = Self::key(failure_id);
        let response = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(name, value)
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| InfraError::new("DynamoDB", "GetItem", sdk_error_text(&error)))?;
        response.item.map(|item| from_item(item, "GetItem")).transpose()
    }

    async fn list(&self) -> Result<Vec<StoredFailure>, InfraError> {
        let mut failures = Vec::new();
        let mut start_key = None;
        // NOTE: a full scan, bounded by the table's TTL; fine for the failure
        // counts of a finance team, slow for millions of records.
        loop {
            let response = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|error| InfraError::new("DynamoDB", "Scan", sdk_error_text(&error)))?;
            for item in response.items.unwrap_or_default() {
                match from_item::<StoredFailure>(item, "Scan") {
                    Ok(failure) => failures.push(failure),
                    Err(error) => tracing::warn!(error = %error, "skipping an unreadable failure record"),
                }
            }
            match response.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        Ok(failures)
    }

    async fn mark_redriven(&self, failure_id: &str, at: &str) -> Result<bool, InfraError> {
        let (name, value) = Self::key(failure_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(name, value)
            .update_expression("SET #status = :redriven, redriven_at = :at, updated_at = :at")
            .condition_expression("#status = :open")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":redriven", AttributeValue::S(failure_status::REDRIVEN.into()))
            .expression_attribute_values(":open", AttributeValue::S(failure_status::OPEN.into()))
            .expression_attribute_values(":at", AttributeValue::S(at.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(InfraError::new("DynamoDB", "UpdateItem", sdk_error_text(&error))),
        }
    }

    async fn reopen(&self, failure_id: &str, at: &str, error_text: &str) -> Result<bool, InfraError> {
        let (name, value) = Self::key(failure_id);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(name, value)
            .update_expression("SET #status = :open, updated_at = :now, #error = :error REMOVE redriven_at")
            .condition_expression("#status = :redriven AND redriven_at = :at")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":redriven", AttributeValue::S(failure_status::REDRIVEN.into()))
            .expression_attribute_values(":open", AttributeValue::S(failure_status::OPEN.into()))
            .expression_attribute_values(":at", AttributeValue::S(at.to_owned()))
            .expression_attribute_values(":now", AttributeValue::S(now))
            .expression_attribute_values(":error", AttributeValue::S(error_text.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(InfraError::new("DynamoDB", "UpdateItem", sdk_error_text(&error))),
        }
    }

    async fn set_alert_state(&self, failure_id: &str, state: &str) -> Result<(), InfraError> {
        let (name, value) = Self::key(failure_id);
        self.client
            .update_item()
            .table_name(&self.table)
            .key(name, value)
            .update_expression("SET alert_state = :state")
            .condition_expression("attribute_exists(failure_id)")
            .expression_attribute_values(":state", AttributeValue::S(state.to_owned()))
            .send()
            .await
            .map_err(|error| InfraError::new("DynamoDB", "UpdateItem", sdk_error_text(&error)))?;
        Ok(())
    }
}

/// The failure table in memory, for unit tests.
#[derive(Debug, Default)]
pub struct MemoryFailureStore {
    pub items: Mutex<BTreeMap<String, StoredFailure>>,
}

impl MemoryFailureStore {
    pub fn all(&self) -> Vec<StoredFailure> {
        self.items.lock().unwrap().values().cloned().collect()
    }
}

#[async_trait]
impl FailureStore for MemoryFailureStore {
    async fn insert_new(&self, failure: &StoredFailure) -> Result<bool, InfraError> {
        let mut items = self.items.lock().unwrap();
        if items.contains_key(&failure.record.failure_id) {
            return Ok(false);
        }
        items.insert(failure.record.failure_id.clone(), failure.clone());
        Ok(true)
    }

    async fn get(&self, failure_id: &str) -> Result<Option<StoredFailure>, InfraError> {
        Ok(self.items.lock().unwrap().get(failure_id).cloned())
    }

    async fn list(&self) -> Result<Vec<StoredFailure>, InfraError> {
        Ok(self.all())
    }

    async fn mark_redriven(&self, failure_id: &str, at: &str) -> Result<bool, InfraError> {
        let mut items = self.items.lock().unwrap();
        match items.get_mut(failure_id) {
            Some(failure) if failure.record.status == failure_status::OPEN => {
                failure.record.status = failure_status::REDRIVEN.into();
                failure.record.redriven_at = Some(at.to_owned());
                failure.record.updated_at = Some(at.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn reopen(&self, failure_id: &str, at: &str, error: &str) -> Result<bool, InfraError> {
        let mut items = self.items.lock().unwrap();
        match items.get_mut(failure_id) {
            Some(failure)
                if failure.record.status == failure_status::REDRIVEN
                    && failure.record.redriven_at.as_deref() == Some(at) =>
            {
                failure.record.status = failure_status::OPEN.into();
                failure.record.redriven_at = None;
                failure.record.error = error.to_owned();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_alert_state(&self, failure_id: &str, state: &str) -> Result<(), InfraError> {
        if let Some(failure) = self.items.lock().unwrap().get_mut(failure_id) {
            failure.alert_state = Some(state.to_owned());
        }
        Ok(())
    }
}
