use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

use super::sdk_error_text;
use crate::ports::{InfraError, RawArchive};
use crate::sweep::ArchiveListing;

/// The raw-payload archive in S3.
#[derive(Debug, Clone)]
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Archive {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Archive {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl RawArchive for S3Archive {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, body: &[u8]) -> Result<(), InfraError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .map_err(|error| InfraError::new("S3", "PutObject", sdk_error_text(&error)))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, InfraError> {
        let response = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
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

#[async_trait]
impl ArchiveListing for S3Archive {
    async fn list_keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, InfraError> {
        let mut keys = Vec::new();
        let mut continuation: Option<String> = None;
        while keys.len() < limit {
            let response = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|error| InfraError::new("S3", "ListObjectsV2", sdk_error_text(&error)))?;
            keys.extend(
                response
                    .contents()
                    .iter()
                    .filter_map(|object| object.key().map(str::to_owned)),
            );
            match response.next_continuation_token() {
                Some(token) if response.is_truncated() == Some(true) => continuation = Some(token.to_owned()),
                _ => break,
            }
        }
        keys.truncate(limit);
        Ok(keys)
    }
}
