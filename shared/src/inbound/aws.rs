//! SDK adapters of the inbound ports: the inbox bucket, upload records in
//! the document table, the failure table, the inbox queue for handoffs, and
//! the contact-mapping loader.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::types::{Tag, Tagging};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::StreamExt;

use super::ObjectRef;
use super::event::UploadRequestMessage;
use super::mapping::{ContactMapping, MappingError};
use super::ports::{FailureLog, Handoff, ListPage, ListedObject, ObjectInfo, ObjectStore, UploadClaim, UploadLedger};
use super::uploader::upload_status;
use crate::aws::{Clients, DynamoDocumentStore, from_item, sdk_error_text, to_item};
use crate::failures::FailureRecord;
use crate::ports::InfraError;
use crate::recordengine::{BoxError, FileBody};
use crate::records::{DOCUMENT_SK, UploadRecord};

/// The inbox bucket through the S3 API.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
}

impl S3ObjectStore {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3ObjectStore { client }
    }
}

fn unquote(etag: Option<&str>) -> Option<String> {
    etag.map(|etag| etag.trim_matches('"').to_owned())
        .filter(|etag| !etag.is_empty())
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn head(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, InfraError> {
        let response = self
            .client
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) if error.raw_response().is_some_and(|raw| raw.status().as_u16() == 404) => return Ok(None),
            Err(error) => return Err(InfraError::new("S3", "HeadObject", sdk_error_text(&error))),
        };
        let metadata = response
            .metadata()
            .map(|metadata| {
                metadata
                    .iter()
                    .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(ObjectInfo {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: response
                .version_id()
                .filter(|version| !version.is_empty() && *version != "null")
                .map(str::to_owned),
            etag: unquote(response.e_tag()),
            size: response.content_length().unwrap_or(0).max(0) as u64,
            metadata,
        }))
    }

    async fn open(&self, info: &ObjectInfo) -> Result<Option<FileBody>, InfraError> {
        let mut request = self.client.get_object().bucket(&info.bucket).key(&info.key);
        request = match (&info.version_id, &info.etag) {
            (Some(version_id), _) => request.version_id(version_id),
            (None, Some(etag)) => request.if_match(format!("\"{etag}\"")),
            (None, None) => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|raw| matches!(raw.status().as_u16(), 404 | 412)) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(InfraError::new("S3", "GetObject", sdk_error_text(&error))),
        };
        let length = response.content_length().unwrap_or(0).max(0) as u64;
        // The SDK's body yields chunks as they arrive and is pulled only as fast
        // as the upload sends, so memory stays flat whatever the object's size.
        let stream = futures::stream::unfold(response.body, |mut body| async move {
            body.next()
                .await
                .map(|chunk| (chunk.map_err(|error| Box::new(error) as BoxError), body))
        });
        Ok(Some(FileBody {
            length,
            stream: stream.boxed(),
        }))
    }

    async fn add_tags(&self, info: &ObjectInfo, tags: &[(&str, String)]) -> Result<(), InfraError> {
        let current = self
            .client
            .get_object_tagging()
            .bucket(&info.bucket)
            .key(&info.key)
            .set_version_id(info.version_id.clone())
            .send()
            .await
            .map_err(|error| InfraError::new("S3", "GetObjectTagging", sdk_error_text(&error)))?;
        let mut merged: BTreeMap<String, String> = current
            .tag_set()
            .iter()
            .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
            .collect();
        for (name, value) in tags {
            merged.insert((*name).to_owned(), value.clone());
        }
        let tag_set = merged
            .into_iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| InfraError::new("S3", "PutObjectTagging", error.to_string()))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|error| InfraError::new("S3", "PutObjectTagging", error.to_string()))?;
        self.client
            .put_object_tagging()
            .bucket(&info.bucket)
            .key(&info.key)
            .set_version_id(info.version_id.clone())
            .tagging(tagging)
            .send()
            .await
            .map_err(|error| InfraError::new("S3", "PutObjectTagging", sdk_error_text(&error)))?;
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str, page_token: Option<String>) -> Result<ListPage, InfraError> {
        let response = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(page_token)
            .send()
            .await
            .map_err(|error| InfraError::new("S3", "ListObjectsV2", sdk_error_text(&error)))?;
        let objects = response
            .contents()
            .iter()
            .filter_map(|object| {
                Some(ListedObject {
                    key: object.key()?.to_owned(),
                    etag: unquote(object.e_tag()),
                    size: object.size().unwrap_or(0).max(0) as u64,
                })
            })
            .collect();
        let next = if response.is_truncated() == Some(true) {
            response.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }
}

fn is_condition_failure<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|service| service.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

#[async_trait]
impl UploadLedger for DynamoDocumentStore {
    async fn claim_upload(&self, candidate: &UploadRecord, now_epoch: i64) -> Result<UploadClaim, InfraError> {
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(to_item(candidate, "PutItem")?))
            .condition_expression("attribute_not_exists(pk) OR #status = :failed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", AttributeValue::S(upload_status::FAILED.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(UploadClaim::Claimed),
            Err(error) if is_condition_failure(&error) => {
                let response = self
                    .client()
                    .get_item()
                    .table_name(self.table())
                    .key("pk", AttributeValue::S(candidate.pk.clone()))
                    .key("sk", AttributeValue::S(DOCUMENT_SK.into()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|error| InfraError::new("DynamoDB", "GetItem", sdk_error_text(&error)))?;
                let current: UploadRecord = response
                    .item
                    .map(|item| from_item(item, "GetItem"))
                    .transpose()?
                    .ok_or_else(|| InfraError::new("DynamoDB", "GetItem", "upload record vanished during claim"))?;
                Ok(classify_claim(current, now_epoch))
            }
            Err(error) => Err(InfraError::new("DynamoDB", "PutItem", sdk_error_text(&error))),
        }
    }

    async fn take_over_upload(&self, candidate: &UploadRecord, seen: &UploadRecord) -> Result<bool, InfraError> {
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(to_item(candidate, "PutItem")?))
            .condition_expression("#status = :status AND updated_at = :updated_at")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", AttributeValue::S(seen.status.clone()))
            .expression_attribute_values(":updated_at", AttributeValue::S(seen.updated_at.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(InfraError::new("DynamoDB", "PutItem", sdk_error_text(&error))),
        }
    }

    async fn save_upload(&self, record: &UploadRecord) -> Result<(), InfraError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(to_item(record, "PutItem")?))
            .send()
            .await
            .map_err(|error| InfraError::new("DynamoDB", "PutItem", sdk_error_text(&error)))?;
        Ok(())
    }
}

/// Reads why a claim failed from the record that blocked it.
pub fn classify_claim(current: UploadRecord, now_epoch: i64) -> UploadClaim {
    match current.status.as_str() {
        upload_status::UPLOADED => UploadClaim::Uploaded(Box::new(current)),
        upload_status::UPLOADING if current.lease_until.is_some_and(|lease| lease >= now_epoch) => {
            UploadClaim::InProgress(Box::new(current))
        }
        upload_status::UPLOADING | upload_status::AMBIGUOUS => UploadClaim::Uncertain(Box::new(current)),
        // `failed` was claimable a moment ago: another caller claimed it in between.
        _ => UploadClaim::InProgress(Box::new(current)),
    }
}

/// The failure table in DynamoDB (partition key `failure_id`).
#[derive(Debug, Clone)]
pub struct DynamoFailureLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoFailureLog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoFailureLog {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl FailureLog for DynamoFailureLog {
    async fn record_failure(&self, record: &FailureRecord) -> Result<(), InfraError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record, "PutItem")?))
            .send()
            .await
            .map_err(|error| InfraError::new("DynamoDB", "PutItem", sdk_error_text(&error)))?;
        Ok(())
    }
}

/// Hands objects to the inbox queue as [`UploadRequestMessage`]s.
#[derive(Debug, Clone)]
pub struct SqsHandoff {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsHandoff {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsHandoff {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl Handoff for SqsHandoff {
    async fn hand_off(&self, objects: &[ObjectRef]) -> Result<usize, InfraError> {
        let mut queued = 0;
        // SendMessageBatch takes at most 10 entries.
        for batch in objects.chunks(10) {
            let mut entries = Vec::with_capacity(batch.len());
            for (index, object) in batch.iter().enumerate() {
                let body = serde_json::to_string(&UploadRequestMessage::new(object))
                    .map_err(|error| InfraError::new("SQS", "SendMessageBatch", error.to_string()))?;
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|error| InfraError::new("SQS", "SendMessageBatch", error.to_string()))?;
                entries.push(entry);
            }
            let response = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| InfraError::new("SQS", "SendMessageBatch", sdk_error_text(&error)))?;
            for failed in response.failed() {
                tracing::warn!(entry = failed.id(), code = failed.code(), message = ?failed.message(),
                    "an upload request was not queued; the next scheduled run picks the object up");
            }
            queued += response.successful().len();
        }
        Ok(queued)
    }
}

/// Loads the contact mapping named by `source`, or the bundled default:
///
/// - unset: `infra/contact-mapping.yaml` as compiled into the function;
/// - `s3://<bucket>/<key>`: a YAML or JSON object in S3;
/// - `ssm:<parameter name>`: a String parameter in SSM Parameter Store.
pub async fn load_contact_mapping(source: Option<&str>, clients: &Clients) -> Result<ContactMapping, MappingError> {
    let Some(source) = source else {
        return ContactMapping::bundled();
    };
    let fail = |message: String| MappingError(format!("contact mapping {source}: {message}"));

    let text = if let Some(location) = source.strip_prefix("s3://") {
        let (bucket, key) = location
            .split_once('/')
            .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
            .ok_or_else(|| fail("write the S3 location as s3://<bucket>/<key>".into()))?;
        let object = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| fail(format!("S3 GetObject failed: {}", sdk_error_text(&error))))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|error| fail(format!("S3 GetObject failed: {error}")))?
            .into_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|_| fail("the object is not UTF-8 text".into()))?
    } else if let Some(name) = source.strip_prefix("ssm:") {
        let parameter = clients
            .ssm
            .get_parameter()
            .name(name)
            .send()
            .await
            .map_err(|error| fail(format!("SSM GetParameter failed: {}", sdk_error_text(&error))))?;
        parameter
            .parameter()
            .and_then(|parameter| parameter.value())
            .map(str::to_owned)
            .ok_or_else(|| fail("the parameter has no value".into()))?
    } else {
        return Err(fail(
            "CONTACT_MAPPING_SOURCE must be s3://<bucket>/<key> or ssm:<parameter name>, or unset for the bundled mapping"
                .into(),
        ));
    };
    ContactMapping::from_text(&text, source)
}
