//! The webhook function's configuration, read once at start-up.

use std::collections::BTreeMap;

use bridge_shared::auth::AuthMode;
use bridge_shared::config::{ConfigError, optional, parse_pairs, parsed_or, required};
use bridge_shared::recordengine::RecordEngineSettings;

/// Environment of the webhook function; `template.yaml` sets every variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ARCHIVE_BUCKET`: where raw bodies are archived.
    pub archive_bucket: String,
    /// `DOCUMENT_TABLE`: the DynamoDB document table.
    pub document_table: String,
    /// `DESTINATION_QUEUES`: `name=queue URL` pairs, one per destination.
    pub destination_queues: BTreeMap<String, String>,
    /// `WEBHOOK_TOKEN_SECRET_ARN`: the secret holding the bearer token or path secret.
    pub token_secret_arn: String,
    /// `WEBHOOK_AUTH_MODE`: `bearer` (default) or `path-secret`.
    pub auth_mode: AuthMode,
    /// `ROUTING_RULES_SOURCE`: `s3://bucket/key`, `ssm:name`, or unset for the bundled rules.
    pub rules_source: Option<String>,
    /// `MAX_BODY_BYTES`: larger bodies are archived and answered 413 (default 1 MiB).
    pub max_body_bytes: usize,
    /// `RECORDENGINE_BASE_URL`, `RECORDENGINE_TOKEN_SECRET_ARN` and the other
    /// `RECORDENGINE_*` variables, for `GET /documents/{id}?refresh=true`; `None` when the URL is unset.
    pub recordengine: Option<RecordEngineSettings>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let queues_text = required("DESTINATION_QUEUES")?;
        Ok(Config {
            archive_bucket: required("ARCHIVE_BUCKET")?,
            document_table: required("DOCUMENT_TABLE")?,
            destination_queues: parse_pairs("DESTINATION_QUEUES", &queues_text)?,
            token_secret_arn: required("WEBHOOK_TOKEN_SECRET_ARN")?,
            auth_mode: parsed_or("WEBHOOK_AUTH_MODE", AuthMode::Bearer)?,
            rules_source: optional("ROUTING_RULES_SOURCE"),
            max_body_bytes: parsed_or("MAX_BODY_BYTES", 1024 * 1024)?,
            recordengine: RecordEngineSettings::from_env()?,
        })
    }
}
