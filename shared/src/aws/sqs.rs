use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;

use super::sdk_error_text;
use crate::ports::{InfraError, MessageQueue};

/// The destination queues, by destination name.
#[derive(Debug, Clone)]
pub struct SqsQueues {
    client: aws_sdk_sqs::Client,
    queue_urls: BTreeMap<String, String>,
}

impl SqsQueues {
    pub fn new(client: aws_sdk_sqs::Client, queue_urls: BTreeMap<String, String>) -> Self {
        SqsQueues { client, queue_urls }
    }
}

#[async_trait]
impl MessageQueue for SqsQueues {
    async fn send(&self, destination: &str, body: &str, attributes: &[(&str, String)]) -> Result<String, InfraError> {
        let queue_url = self.queue_urls.get(destination).ok_or_else(|| {
            InfraError::new(
                "SQS",
                "SendMessage",
                format!("no queue is configured for destination `{destination}`"),
            )
        })?;

        let mut request = self.client.send_message().queue_url(queue_url).message_body(body);
        for (name, value) in attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|error| InfraError::new("SQS", "SendMessage", error.to_string()))?;
            request = request.message_attributes(*name, attribute);
        }

        let response = request
            .send()
            .await
            .map_err(|error| InfraError::new("SQS", "SendMessage", sdk_error_text(&error)))?;
        Ok(response.message_id().unwrap_or_default().to_owned())
    }
}
