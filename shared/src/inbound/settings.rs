//! Building the AWS-backed [`Uploader`] from environment variables, for the
//! upload functions and for `bridgectl upload`.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DOCUMENT_TABLE` | document table (upload and document records) | required |
//! | `FAILURE_TABLE` | failure table | required |
//! | `ALERTS_QUEUE_URL` | alerts queue | required |
//! | `INBOX_PREFIX` | root of the `<root>/<contact>/<folder>/` convention for S3 drops | `inbox/` |
//! | `SCHEDULED_PREFIX` | prefix the scheduled run uploads; ignored in S3 events | `scheduled/` |
//! | `CONTACT_MAPPING_SOURCE` | `s3://bucket/key`, `ssm:name`, or unset for the bundled file | bundled |
//! | `UPLOAD_LEASE_SECONDS` | lifetime of an `uploading` claim, in seconds | 960 |
//! | `AMBIGUOUS_SETTLE_SECONDS` | wait before looking up an ambiguous upload | 60 |
//! | `TAG_UPLOADED_OBJECTS` | tag uploaded objects `recordengine-status` and `recordengine-id` | `true` |
//!
//! and the `RECORDENGINE_*` variables of [`RecordEngineSettings`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::aws::{DynamoFailureLog, load_contact_mapping};
use super::mapping::MappingRules;
use super::uploader::{ALERTS_DESTINATION, Uploader, UploaderConfig};
use crate::aws::{Clients, DynamoDocumentStore, SecretsManagerSource, SqsQueues};
use crate::config::{ConfigError, optional, parsed_or, required};
use crate::recordengine::{RecordEngineClient, RecordEngineSettings};

/// The uploader over DynamoDB, SQS, Secrets Manager and the RecordEngine HTTP client.
pub type AwsUploader =
    Uploader<DynamoDocumentStore, RecordEngineClient<SecretsManagerSource>, DynamoFailureLog, SqsQueues>;

/// Inbound settings read from the environment.
#[derive(Debug, Clone)]
pub struct InboundSettings {
    pub document_table: String,
    pub failure_table: String,
    pub alerts_queue_url: String,
    pub inbox_prefix: String,
    pub scheduled_prefix: String,
    pub contact_mapping_source: Option<String>,
    pub lease_seconds: i64,
    pub uncertain_settle: Duration,
    pub tag_objects: bool,
    pub recordengine: RecordEngineSettings,
}

impl InboundSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let recordengine = RecordEngineSettings::from_env()?.ok_or_else(|| {
            ConfigError(
                "environment variable RECORDENGINE_BASE_URL is not set; deploy with the RecordEngineBaseUrl parameter"
                    .into(),
            )
        })?;
        let lease_seconds: i64 = parsed_or("UPLOAD_LEASE_SECONDS", 960)?;
        if lease_seconds < 60 {
            return Err(ConfigError(format!(
                "environment variable UPLOAD_LEASE_SECONDS={lease_seconds} is invalid: use at least 60, and more than the function timeout"
            )));
        }
        Ok(InboundSettings {
            document_table: required("DOCUMENT_TABLE")?,
            failure_table: required("FAILURE_TABLE")?,
            alerts_queue_url: required("ALERTS_QUEUE_URL")?,
            inbox_prefix: prefix("INBOX_PREFIX", "inbox/"),
            scheduled_prefix: prefix("SCHEDULED_PREFIX", "scheduled/"),
            contact_mapping_source: optional("CONTACT_MAPPING_SOURCE"),
            lease_seconds,
            uncertain_settle: Duration::from_secs(parsed_or("AMBIGUOUS_SETTLE_SECONDS", 60)?),
            tag_objects: parsed_or("TAG_UPLOADED_OBJECTS", true)?,
            recordengine,
        })
    }

    /// Builds the uploader; `recorded_by` names the caller in failure records.
    /// Fails with a message naming the setting when the mapping, the CA bundle
    /// or the RecordEngine URL is invalid.
    pub async fn build_uploader(&self, clients: &Clients, recorded_by: &str) -> Result<AwsUploader, ConfigError> {
        let secrets = Arc::new(SecretsManagerSource::new(clients.secrets.clone()));
        let client_config = self.recordengine.clone().load(secrets.as_ref()).await?;
        let recordengine =
            RecordEngineClient::new(client_config, secrets).map_err(|error| ConfigError(error.to_string()))?;

        let mapping = load_contact_mapping(self.contact_mapping_source.as_deref(), clients)
            .await
            .map_err(|error| ConfigError(error.0))?;
        tracing::info!(source = %mapping.source_name, version = mapping.version.as_deref().unwrap_or("none"), prefixes = mapping.prefixes.len(),
            "contact mapping loaded");
        let rules = MappingRules::new(mapping, &[&self.inbox_prefix, &self.scheduled_prefix]);

        let alerts = SqsQueues::new(
            clients.sqs.clone(),
            BTreeMap::from([(ALERTS_DESTINATION.to_owned(), self.alerts_queue_url.clone())]),
        );
        Ok(Uploader::new(
            Arc::new(DynamoDocumentStore::new(clients.dynamodb.clone(), &self.document_table)),
            Arc::new(recordengine),
            Arc::new(DynamoFailureLog::new(clients.dynamodb.clone(), &self.failure_table)),
            Arc::new(alerts),
            Arc::new(rules),
            UploaderConfig {
                recorded_by: recorded_by.to_owned(),
                lease_seconds: self.lease_seconds,
                uncertain_settle: self.uncertain_settle,
                event_ignored_prefixes: vec![self.scheduled_prefix.clone()],
                tag_objects: self.tag_objects,
            },
        ))
    }
}

/// Reads a key prefix and makes it end with `/`.
fn prefix(name: &str, default: &str) -> String {
    let value = optional(name).unwrap_or_else(|| default.to_owned());
    format!("{}/", value.trim_matches('/'))
}
