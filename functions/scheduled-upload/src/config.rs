//! The scheduled upload function's configuration, read once at start-up.

use std::time::Duration;

use bridge_shared::config::{ConfigError, parsed_or, required};
use bridge_shared::inbound::{InboundSettings, ScheduleConfig};

/// Environment of the scheduled upload function; `template.yaml` sets every variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables, alerts queue, prefixes, mapping and `RECORDENGINE_*` settings.
    pub inbound: InboundSettings,
    /// `INBOX_QUEUE_URL`: where objects without time left are handed over.
    pub inbox_queue_url: String,
    /// `INBOX_BUCKET`, `SCHEDULED_PREFIX`, `UPLOAD_CONCURRENCY` (default 4),
    /// `DEADLINE_MARGIN_SECONDS` (default 60) and `UPLOAD_MARGIN_SECONDS` (default 10).
    pub schedule: ScheduleConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let inbound = InboundSettings::from_env()?;
        let concurrency: usize = parsed_or("UPLOAD_CONCURRENCY", 4)?;
        if !(1..=64).contains(&concurrency) {
            return Err(ConfigError(format!(
                "environment variable UPLOAD_CONCURRENCY={concurrency} is invalid: use 1 to 64"
            )));
        }
        let deadline_margin: u64 = parsed_or("DEADLINE_MARGIN_SECONDS", 60)?;
        let upload_margin: u64 = parsed_or("UPLOAD_MARGIN_SECONDS", 10)?;
        if upload_margin >= deadline_margin {
            return Err(ConfigError(format!(
                "UPLOAD_MARGIN_SECONDS={upload_margin} must be below DEADLINE_MARGIN_SECONDS={deadline_margin}: \
                 an upload that starts at the margin needs time to finish"
            )));
        }
        Ok(Config {
            schedule: ScheduleConfig {
                bucket: required("INBOX_BUCKET")?,
                prefix: inbound.scheduled_prefix.clone(),
                concurrency,
                deadline_margin: Duration::from_secs(deadline_margin),
                upload_margin: Duration::from_secs(upload_margin),
            },
            inbox_queue_url: required("INBOX_QUEUE_URL")?,
            inbound,
        })
    }
}
