use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sdk_error_text;
use crate::ports::{DocumentStore, DocumentView, ExportClaim, InfraError};
use crate::records::{
    DOCUMENT_SK, DocumentRecord, ExportRecord, TimelineEntry, UploadRecord, document_pk, export_sk, export_status,
    reference_pk,
};
use crate::sweep::TableScan;

type Item = HashMap<String, AttributeValue>;

/// The document table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDocumentStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDocumentStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoDocumentStore {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item<T: DeserializeOwned>(&self, pk: String, sk: &str) -> Result<Option<T>, InfraError> {
        let response = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| InfraError::new("DynamoDB", "GetItem", sdk_error_text(&error)))?;
        response.item.map(|item| from_item(item, "GetItem")).transpose()
    }

    async fn put_item(&self, item: Item) -> Result<(), InfraError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|error| InfraError::new("DynamoDB", "PutItem", sdk_error_text(&error)))?;
        Ok(())
    }
}

/// Converts a record to a DynamoDB item.
pub fn to_item<T: Serialize>(record: &T, operation: &'static str) -> Result<Item, InfraError> {
    serde_dynamo::to_item(record).map_err(|error| InfraError::new("DynamoDB", operation, error.to_string()))
}

/// Reads a record from a DynamoDB item.
pub fn from_item<T: DeserializeOwned>(item: Item, operation: &'static str) -> Result<T, InfraError> {
    serde_dynamo::from_item(item).map_err(|error| InfraError::new("DynamoDB", operation, error.to_string()))
}

#[async_trait]
impl DocumentStore for DynamoDocumentStore {
    async fn get_document(&self, document_id: i64) -> Result<Option<DocumentRecord>, InfraError> {
        self.get_item(document_pk(document_id), DOCUMENT_SK).await
    }

    async fn put_document(&self, record: &DocumentRecord) -> Result<(), InfraError> {
        self.put_item(to_item(record, "PutItem")?).await
    }

    async fn get_upload(&self, correlation_key: &str) -> Result<Option<UploadRecord>, InfraError> {
        self.get_item(reference_pk(correlation_key), DOCUMENT_SK).await
    }

    async fn claim_export(&self, candidate: &ExportRecord, now_epoch: i64) -> Result<ExportClaim, InfraError> {
        // One conditional write decides between concurrent deliveries: it
        // succeeds for a new export, for one left `unrouted` by a failed
        // delivery, and for a `routing` claim whose lease has run out.
        let mut claimed = candidate.clone();
        let earlier = self
            .get_item::<ExportRecord>(candidate.pk.clone(), &candidate.sk)
            .await?;
        if let Some(earlier) = earlier {
            claimed.deliveries = earlier.deliveries + 1;
            claimed.received_at = earlier.received_at;
        }
        let item = to_item(&claimed, "PutItem")?;

        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR #status = :unrouted OR (#status = :routing AND lease_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":unrouted", AttributeValue::S(export_status::UNROUTED.into()))
            .expression_attribute_values(":routing", AttributeValue::S(export_status::ROUTING.into()))
            .expression_attribute_values(":now", AttributeValue::N(now_epoch.to_string()))
            .send()
            .await;

        match result {
            Ok(_) => Ok(ExportClaim::Claimed(Box::new(claimed))),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_conditional_check_failed_exception()) =>
            {
                let current: ExportRecord = self
                    .get_item(candidate.pk.clone(), &candidate.sk)
                    .await?
                    .ok_or_else(|| InfraError::new("DynamoDB", "GetItem", "export record vanished during claim"))?;
                if current.status == export_status::ROUTED {
                    Ok(ExportClaim::AlreadyRouted(Box::new(current)))
                } else {
                    Ok(ExportClaim::InProgress(Box::new(current)))
                }
            }
            Err(error) => Err(InfraError::new("DynamoDB", "PutItem", sdk_error_text(&error))),
        }
    }

    async fn finish_export(&self, record: &ExportRecord) -> Result<(), InfraError> {
        self.put_item(to_item(record, "PutItem")?).await
    }

    async fn get_export(&self, document_id: i64, fingerprint: &str) -> Result<Option<ExportRecord>, InfraError> {
        self.get_item(document_pk(document_id), &export_sk(fingerprint)).await
    }

    async fn append_timeline(&self, entry: &TimelineEntry) -> Result<(), InfraError> {
        self.put_item(to_item(entry, "PutItem")?).await
    }

    async fn document_view(&self, document_id: i64) -> Result<DocumentView, InfraError> {
        let mut view = DocumentView::default();
        let mut start_key: Option<Item> = None;

        loop {
            let response = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(document_pk(document_id)))
                .set_exclusive_start_key(start_key.take())
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| InfraError::new("DynamoDB", "Query", sdk_error_text(&error)))?;

            for item in response.items.unwrap_or_default() {
                let sort_key = item
                    .get("sk")
                    .and_then(|value| value.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                if sort_key == DOCUMENT_SK {
                    view.document = Some(from_item(item, "Query")?);
                } else if sort_key.starts_with("export#") {
                    view.exports.push(from_item(item, "Query")?);
                } else if sort_key.starts_with("event#") {
                    view.timeline.push(from_item(item, "Query")?);
                }
            }

            match response.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }

        view.timeline.sort_by(|a, b| a.sk.cmp(&b.sk));
        Ok(view)
    }
}

#[async_trait]
impl TableScan for DynamoDocumentStore {
    async fn scan_prefix(&self, pk_prefix: &str, sk_prefix: &str) -> Result<Vec<serde_json::Value>, InfraError> {
        let mut items = Vec::new();
        let mut start_key: Option<Item> = None;
        // NOTE: a full-table scan; fine for operator tooling and an hourly
        // sweep of a finance team's volume, not for millions of documents.
        loop {
            let response = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :pk) AND begins_with(sk, :sk)")
                .expression_attribute_values(":pk", AttributeValue::S(pk_prefix.to_owned()))
                .expression_attribute_values(":sk", AttributeValue::S(sk_prefix.to_owned()))
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|error| InfraError::new("DynamoDB", "Scan", sdk_error_text(&error)))?;
            for item in response.items.unwrap_or_default() {
                items.push(from_item(item, "Scan")?);
            }
            match response.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }

    async fn get_json(&self, pk: &str, sk: &str) -> Result<Option<serde_json::Value>, InfraError> {
        self.get_item(pk.to_owned(), sk).await
    }
}
