//! The S3 upload function's configuration, read once at start-up.

use std::time::Duration;

use bridge_shared::config::{ConfigError, parsed_or, required};
use bridge_shared::inbound::InboundSettings;

use crate::handler::HandlerConfig;

/// Environment of the S3 upload function; `template.yaml` sets every variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables, alerts queue, prefixes, mapping and `RECORDENGINE_*` settings.
    pub inbound: InboundSettings,
    /// `INBOX_QUEUE_URL`: the queue this function reads, for per-message retry delays.
    pub inbox_queue_url: String,
    pub handler: HandlerConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = HandlerConfig::default();
        let retry_base: u64 = parsed_or("RETRY_BASE_SECONDS", defaults.retry_base.as_secs())?;
        let retry_max: u64 = parsed_or("RETRY_MAX_SECONDS", defaults.retry_max.as_secs())?;
        if retry_base == 0 || retry_max < retry_base || retry_max > 43_200 {
            return Err(ConfigError(format!(
                "RETRY_BASE_SECONDS={retry_base} and RETRY_MAX_SECONDS={retry_max} are invalid: \
                 use 1 <= base <= max <= 43200 (the longest SQS visibility timeout)"
            )));
        }
        let concurrency: usize = parsed_or("UPLOAD_CONCURRENCY", defaults.concurrency)?;
        if concurrency == 0 {
            return Err(ConfigError("UPLOAD_CONCURRENCY=0 is invalid: use 1 or more".into()));
        }
        Ok(Config {
            inbound: InboundSettings::from_env()?,
            inbox_queue_url: required("INBOX_QUEUE_URL")?,
            handler: HandlerConfig {
                concurrency,
                deadline_margin: Duration::from_secs(parsed_or(
                    "DEADLINE_MARGIN_SECONDS",
                    defaults.deadline_margin.as_secs(),
                )?),
                retry_base: Duration::from_secs(retry_base),
                retry_max: Duration::from_secs(retry_max),
            },
        })
    }
}
