use async_trait::async_trait;

use super::sdk_error_text;
use crate::ports::{InfraError, SecretSource};

/// Reads secrets from AWS Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManagerSource { client }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn secret_string(&self, secret_id: &str) -> Result<String, InfraError> {
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
                format!("secret {secret_id} has no string value; store the token as plain text"),
            )
        })
    }
}
