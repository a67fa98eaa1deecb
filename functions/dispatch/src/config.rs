//! The dispatcher's configuration, read once at start-up.

use std::time::Duration;

use bridge_shared::aws::{Clients, loopback_only, sdk_error_text};
use bridge_shared::config::{ConfigError, optional, parsed_or, required};
use bridge_shared::dispatch::alert_text::AlertLocale;
use bridge_shared::dispatch::settings::{BUNDLED_DESTINATIONS, DestinationsFile, Overrides};

/// Environment of a dispatcher function; `template.yaml` sets every variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DESTINATION`: the destination this function serves (`accounting`, `crm`, …).
    pub destination: String,
    /// `DOCUMENT_TABLE`: dispatch records, budgets, locks and timelines.
    pub document_table: String,
    /// `QUEUE_URL`: the queue this function consumes, for visibility changes and delayed copies.
    pub queue_url: String,
    /// `DEAD_LETTER_QUEUE_URL`: where permanent failures go.
    pub dead_letter_queue_url: String,
    /// `DESTINATIONS_SOURCE`: `s3://bucket/key`, `ssm:name`, or unset for the bundled settings.
    pub destinations_source: Option<String>,
    /// `DESTINATION_BASE_URL`, `DESTINATION_TOKEN_URL`, `WECOM_BASE_URL`.
    pub overrides: Overrides,
    /// `CREDENTIALS_SECRET_ARN`: the destination's credential secret.
    pub credentials_secret: Option<String>,
    /// `WECOM_KEY_SECRET_ARN`: the alert robot's key.
    pub wecom_secret: Option<String>,
    /// `ALERT_LOCALE`: `en` (default) or `zh-CN`.
    pub locale: AlertLocale,
    /// `ALERT_EMAIL_FROM`: a verified SES identity.
    pub email_from: Option<String>,
    /// `ALERT_EMAIL_TO`: comma-separated recipients.
    pub email_to: Vec<String>,
    /// `DISPATCH_CONCURRENCY`: records handled at once (default 4).
    pub concurrency: usize,
    /// `DEADLINE_MARGIN_MS`: no record starts with less time left (default 10,000).
    pub deadline_margin: Duration,
    /// `HTTP_TIMEOUT_MS`: timeout of one destination request (default 20,000).
    pub http_timeout: Duration,
    /// `MAX_ATTEMPTS`: failed attempts before the dispatcher dead-letters a message (default 8).
    pub max_attempts: u32,
    /// `BRIDGE_LOOPBACK_ONLY`: destination requests to any host but 127.0.0.1 are rejected.
    pub loopback_only: bool,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let locale_text = optional("ALERT_LOCALE").unwrap_or_else(|| "en".to_owned());
        let locale = locale_text.parse().map_err(ConfigError)?;
        let email_to = optional("ALERT_EMAIL_TO")
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|address| !address.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Config {
            destination: required("DESTINATION")?,
            document_table: required("DOCUMENT_TABLE")?,
            queue_url: required("QUEUE_URL")?,
            dead_letter_queue_url: required("DEAD_LETTER_QUEUE_URL")?,
            destinations_source: optional("DESTINATIONS_SOURCE"),
            overrides: Overrides {
                base_url: optional("DESTINATION_BASE_URL"),
                token_url: optional("DESTINATION_TOKEN_URL"),
                wecom_base_url: optional("WECOM_BASE_URL"),
            },
            credentials_secret: optional("CREDENTIALS_SECRET_ARN"),
            wecom_secret: optional("WECOM_KEY_SECRET_ARN"),
            locale,
            email_from: optional("ALERT_EMAIL_FROM"),
            email_to,
            concurrency: parsed_or("DISPATCH_CONCURRENCY", 4)?,
            deadline_margin: Duration::from_millis(parsed_or("DEADLINE_MARGIN_MS", 10_000)?),
            http_timeout: Duration::from_millis(parsed_or("HTTP_TIMEOUT_MS", 20_000)?),
            max_attempts: parsed_or("MAX_ATTEMPTS", 8)?,
            loopback_only: loopback_only(),
        })
    }
}

/// Loads the destination settings named by `source`, or the bundled file:
/// `s3://<bucket>/<key>` or `ssm:<parameter name>`.
pub async fn load_destinations(source: Option<&str>, clients: &Clients) -> Result<DestinationsFile, String> {
    let Some(source) = source else {
        return DestinationsFile::from_yaml(BUNDLED_DESTINATIONS, "bundled infra/destinations.yaml");
    };
    let text = if let Some(location) = source.strip_prefix("s3://") {
        let (bucket, key) = location
            .split_once('/')
            .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
            .ok_or_else(|| format!("DESTINATIONS_SOURCE {source:?}: write the S3 location as s3://<bucket>/<key>"))?;
        let object = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| {
                format!(
                    "DESTINATIONS_SOURCE {source}: S3 GetObject failed: {}",
                    sdk_error_text(&error)
                )
            })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|error| format!("DESTINATIONS_SOURCE {source}: S3 GetObject failed: {error}"))?
            .into_bytes();
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("DESTINATIONS_SOURCE {source}: the object is not UTF-8"))?
    } else if let Some(name) = source.strip_prefix("ssm:") {
        let parameter = clients.ssm.get_parameter().name(name).send().await.map_err(|error| {
            format!(
                "DESTINATIONS_SOURCE {source}: SSM GetParameter failed: {}",
                sdk_error_text(&error)
            )
        })?;
        parameter
            .parameter()
            .and_then(|parameter| parameter.value())
            .map(str::to_owned)
            .ok_or_else(|| format!("DESTINATIONS_SOURCE {source}: the parameter has no value"))?
    } else {
        return Err(format!(
            "DESTINATIONS_SOURCE {source:?} must be s3://<bucket>/<key> or ssm:<parameter name>, or unset for the bundled settings"
        ));
    };
    DestinationsFile::from_yaml(&text, source)
}
