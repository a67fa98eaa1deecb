//! The dead-letter function's configuration, read once at start-up.

use std::collections::BTreeMap;
use std::time::Duration;

use bridge_shared::config::{ConfigError, optional, parse_pairs, parsed_or, required};
use bridge_shared::dispatch::alert_text::AlertLocale;
use bridge_shared::dispatch::wecom::WECOM_BASE_URL;

use crate::dead_letter::QueueMap;
use crate::handler::HandlerConfig;

/// Environment of the dead-letter function; `template.yaml` sets every variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `FAILURE_TABLE`: where failure records are stored.
    pub failure_table: String,
    /// `DOCUMENT_TABLE`: dispatch, upload and document records, timelines and digest items.
    pub document_table: String,
    /// `WECOM_KEY_SECRET_ARN`: the secret holding the robot key; unset sends no WeCom message.
    pub wecom_secret: Option<String>,
    /// `WECOM_BASE_URL`: the robot API (default the production URL).
    pub wecom_base_url: String,
    /// `ALERT_EMAIL_FROM`: a sender address verified in SES.
    pub email_from: Option<String>,
    /// `ALERT_EMAIL_TO`: recipients, comma-separated.
    pub email_to: Vec<String>,
    /// `HTTP_TIMEOUT_SECONDS`: per-request timeout of the robot API (default 10).
    pub http_timeout: Duration,
    pub handler: HandlerConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let dead_letter_queues = parse_pairs("DEAD_LETTER_QUEUES", &required("DEAD_LETTER_QUEUES")?)?;
        let source_queues = match optional("SOURCE_QUEUES") {
            Some(text) => parse_pairs("SOURCE_QUEUES", &text)?,
            None => BTreeMap::new(),
        };
        let locale: AlertLocale = match optional("ALERT_LOCALE") {
            Some(text) => text.parse().map_err(ConfigError)?,
            None => AlertLocale::En,
        };
        let mut handler = HandlerConfig::new(
            QueueMap {
                dead_letter_queues,
                source_queues,
            },
            locale,
        );

        let window: u64 = parsed_or("ALERT_DIGEST_WINDOW_SECONDS", handler.failures.window.as_secs())?;
        let max_window: u64 = parsed_or("ALERT_DIGEST_MAX_WINDOW_SECONDS", handler.failures.max_window.as_secs())?;
        if window == 0 || max_window < window {
            return Err(ConfigError(format!(
                "ALERT_DIGEST_WINDOW_SECONDS={window} and ALERT_DIGEST_MAX_WINDOW_SECONDS={max_window} are invalid: \
                 use 1 <= window <= max window"
            )));
        }
        handler.failures.window = Duration::from_secs(window);
        handler.failures.max_window = Duration::from_secs(max_window);
        handler.failures.max_per_window = parsed_or("ALERT_DIGEST_MAX_PER_WINDOW", handler.failures.max_per_window)?;
        let channel_window: u64 = parsed_or("ALERT_CHANNEL_WINDOW_SECONDS", handler.alert_channel.window.as_secs())?;
        if channel_window == 0 {
            return Err(ConfigError(
                "ALERT_CHANNEL_WINDOW_SECONDS=0 is invalid: use 1 or more".into(),
            ));
        }
        handler.alert_channel.window = Duration::from_secs(channel_window);
        handler.alert_channel.max_window = Duration::from_secs(channel_window);
        handler.retention_days = parsed_or("FAILURE_RETENTION_DAYS", handler.retention_days)?;
        if handler.retention_days < 1 {
            return Err(ConfigError("FAILURE_RETENTION_DAYS must be 1 or more".into()));
        }

        let email_to: Vec<String> = optional("ALERT_EMAIL_TO")
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|address| !address.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let email_from = optional("ALERT_EMAIL_FROM");
        let wecom_secret = optional("WECOM_KEY_SECRET_ARN");
        if wecom_secret.is_none() && (email_from.is_none() || email_to.is_empty()) {
            return Err(ConfigError(
                "no alert channel is configured: set WECOM_KEY_SECRET_ARN, or ALERT_EMAIL_FROM and ALERT_EMAIL_TO"
                    .into(),
            ));
        }

        Ok(Config {
            failure_table: required("FAILURE_TABLE")?,
            document_table: required("DOCUMENT_TABLE")?,
            wecom_secret,
            wecom_base_url: optional("WECOM_BASE_URL").unwrap_or_else(|| WECOM_BASE_URL.to_owned()),
            email_from,
            email_to,
            http_timeout: Duration::from_secs(parsed_or("HTTP_TIMEOUT_SECONDS", 10)?),
            handler,
        })
    }
}
