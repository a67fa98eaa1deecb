//! SDK adapters for the dispatch ports.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageAttributeValue;

use super::ports::{ArchiveReader, DispatchQueue, MailError, MailSender, SecretStore};
use super::store::VersionedStore;
use crate::aws::{from_item, sdk_error_text, to_item};
use crate::ports::InfraError;

/// Versioned items in the document table.
#[derive(Debug, Clone)]
pub struct DynamoVersionedStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoVersionedStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoVersionedStore {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl VersionedStore for DynamoVersionedStore {
    async fn load(&self, pk: &str, sk: &str) -> Result<Option<serde_json::Value>, InfraError> {
        let response = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| InfraError::new("DynamoDB", "GetItem", sdk_error_text(&error)))?;
        response.item.map(|item| from_item(item, "GetItem")).transpose()
    }

    async fn store(&self, item: serde_json::Value, expected: Option<u64>) -> Result<bool, InfraError> {
        let item = to_item(&item, "PutItem")?;
        let mut request = self.client.put_item().table_name(&self.table).set_item(Some(item));
        request = match expected {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(version) => request
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(InfraError::new("DynamoDB", "PutItem", sdk_error_text(&error))),
        }
    }
}

/// A destination queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqsDispatchQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_url: String,
}

impl SqsDispatchQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>, dead_letter_url: impl Into<String>) -> Self {
        SqsDispatchQueue {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: dead_letter_url.into(),
        }
    }

    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        delay: Option<Duration>,
        attributes: &[(&str, String)],
    ) -> Result<(), InfraError> {
        let mut request = self.client.send_message().queue_url(queue_url).message_body(body);
        if let Some(delay) = delay {
            request = request.delay_seconds(delay.as_secs().min(900) as i32);
        }
        for (name, value) in attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|error| InfraError::new("SQS", "SendMessage", error.to_string()))?;
            request = request.message_attributes(*name, attribute);
        }
        request
            .send()
            .await
            .map_err(|error| InfraError::new("SQS", "SendMessage", sdk_error_text(&error)))?;
        Ok(())
    }
}

#[async_trait]
impl DispatchQueue for SqsDispatchQueue {
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), InfraError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(timeout.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|error| InfraError::new("SQS", "ChangeMessageVisibility", sdk_error_text(&error)))?;
        Ok(())
    }

    async fn send_delayed(&self, body: &str, delay: Duration, attributes: &[(&str, String)]) -> Result<(), InfraError> {
        self.send(&self.queue_url, body, Some(delay), attributes).await
    }

    async fn send_to_dead_letter(&self, body: &str, attributes: &[(&str, String)]) -> Result<(), InfraError> {
        self.send(&self.dead_letter_url, body, None, attributes).await
    }
}

/// Reads archived bodies from any bucket the function may read.
#[derive(Debug, Clone)]
pub struct S3ArchiveReader {
    client: aws_sdk_s3::Client,
}

impl S3ArchiveReader {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3ArchiveReader { client }
    }
}

#[async_trait]
impl ArchiveReader for S3ArchiveReader {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, InfraError> {
        let response = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(response) => response,
            Err(error) if error.as_service_error().is_some_and(|service| service.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => return Err(InfraError::new("S3", "GetObject", sdk_error_text(&error))),
        };
        let bytes = response
            .body
            .collect()
            .await
            .map_err(|error| InfraError::new("S3", "GetObject", error.to_string()))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }
}

/// Reads and writes secrets in Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerStore {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManagerStore { client }
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn read(&self, secret_id: &str) -> Result<String, InfraError> {
        let response = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|error| InfraError::new("Secrets Manager", "GetSecretValue", sdk_error_text(&error)))?;
        response.secret_string().map(str::to_owned).ok_or_else(|| {
            InfraError::new(
                "Secrets Manager",
                "GetSecretValue",
                format!("secret {secret_id} has no string value"),
            )
        })
    }

    async fn write(&self, secret_id: &str, value: &str) -> Result<(), InfraError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(value)
            .send()
            .await
            .map_err(|error| InfraError::new("Secrets Manager", "PutSecretValue", sdk_error_text(&error)))?;
        Ok(())
    }
}

/// Sends email with SES v2 `SendEmail`.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        SesMailer { client }
    }
}

#[async_trait]
impl MailSender for SesMailer {
    async fn send(&self, from: &str, to: &[String], subject: &str, body: &str) -> Result<String, MailError> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

        let content = |text: &str| {
            Content::builder()
                .data(text)
                .charset("UTF-8")
                .build()
                .map_err(|error| MailError::Rejected(error.to_string()))
        };
        let message = Message::builder()
            .subject(content(subject)?)
            .body(Body::builder().text(content(body)?).build())
            .build();
        let response = self
            .client
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().set_to_addresses(Some(to.to_vec())).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|error| {
                let text = sdk_error_text(&error);
                let rejected = error.as_service_error().is_some_and(|service| {
                    service.is_message_rejected()
                        || service.is_mail_from_domain_not_verified_exception()
                        || service.is_account_suspended_exception()
                        || service.is_sending_paused_exception()
                        || service.is_bad_request_exception()
                        || service.is_not_found_exception()
                });
                if rejected {
                    MailError::Rejected(text)
                } else {
                    MailError::Retryable(text)
                }
            })?;
        Ok(response.message_id().unwrap_or_default().to_owned())
    }
}
