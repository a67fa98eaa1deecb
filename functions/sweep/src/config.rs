//! The sweep function's configuration, read once at start-up.

use std::collections::BTreeMap;

use bridge_shared::config::{ConfigError, optional, parse_pairs, parsed_or, required};

/// Environment of the sweep function; `template.yaml` sets every variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ARCHIVE_BUCKET`: the raw webhook bodies.
    pub archive_bucket: String,
    /// `DOCUMENT_TABLE`: export, upload and dispatch records, and alert markers.
    pub document_table: String,
    /// `DESTINATION_QUEUES`: `name=queue URL` pairs, one per destination, as the webhook has them.
    pub destination_queues: BTreeMap<String, String>,
    /// `ALERTS_QUEUE_URL`: where operational alerts go.
    pub alerts_queue_url: String,
    /// `ROUTING_RULES_SOURCE`: `s3://bucket/key`, `ssm:name`, or unset for the bundled rules.
    pub rules_source: Option<String>,
    /// `SWEEP_WINDOW_HOURS`: how far back each run looks (default 48).
    pub window_hours: i64,
    /// `DELIVERY_GRACE_MINUTES`: a routed export counts as undelivered after this long (default 30).
    pub delivery_grace_minutes: i64,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let queues_text = required("DESTINATION_QUEUES")?;
        let window_hours: i64 = parsed_or("SWEEP_WINDOW_HOURS", 48)?;
        if !(1..=24 * 400).contains(&window_hours) {
            return Err(ConfigError(format!(
                "SWEEP_WINDOW_HOURS={window_hours} is invalid: use 1 to 9600 hours"
            )));
        }
        let delivery_grace_minutes: i64 = parsed_or("DELIVERY_GRACE_MINUTES", 30)?;
        if delivery_grace_minutes < 1 {
            return Err(ConfigError("DELIVERY_GRACE_MINUTES must be 1 or more".into()));
        }
        Ok(Config {
            archive_bucket: required("ARCHIVE_BUCKET")?,
            document_table: required("DOCUMENT_TABLE")?,
            destination_queues: parse_pairs("DESTINATION_QUEUES", &queues_text)?,
            alerts_queue_url: required("ALERTS_QUEUE_URL")?,
            rules_source: optional("ROUTING_RULES_SOURCE"),
            window_hours,
            delivery_grace_minutes,
        })
    }
}
