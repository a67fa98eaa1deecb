//! Destination settings (`infra/destinations.yaml`) and building the adapter they describe.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::alert_channels::{AlertChannels, EmailChannel};
use super::alert_text::AlertLocale;
use super::budget::RateLimit;
use super::destination::Destination;
use super::generic_http::{GenericHttp, GenericSettings};
use super::http::HttpClient;
use super::hubspot::{HubSpot, HubSpotSettings};
use super::oauth::{OAuthClient, OAuthConfig};
use super::ports::{MailSender, SecretStore};
use super::quickbooks::{QuickBooks, QuickBooksSettings};
use super::store::VersionedStore;
use super::wecom::{WECOM_BASE_URL, WeComRobot};
use super::xero::{Xero, XeroSettings};

/// The settings file bundled with the functions.
pub const BUNDLED_DESTINATIONS: &str = include_str!("../../../infra/destinations.yaml");

/// The whole settings file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationsFile {
    pub version: String,
    pub destinations: BTreeMap<String, DestinationSettings>,
}

/// The settings of one destination, by kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationSettings {
    Quickbooks(QuickBooksSettings),
    Xero(XeroSettings),
    HttpJson(GenericSettings),
    Hubspot(HubSpotSettings),
    Alerts(AlertSettings),
}

/// Settings of the alerts destination.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    #[serde(default = "default_wecom_base_url")]
    pub wecom_base_url: String,
    #[serde(default)]
    pub wecom_rate_limit: Option<RateLimit>,
}

fn default_wecom_base_url() -> String {
    WECOM_BASE_URL.to_owned()
}

/// Values the stack sets per deployment, over the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `DESTINATION_BASE_URL`: the API base URL (the full URL for `http_json`).
    pub base_url: Option<String>,
    /// `DESTINATION_TOKEN_URL`: the OAuth token endpoint.
    pub token_url: Option<String>,
    /// `WECOM_BASE_URL`.
    pub wecom_base_url: Option<String>,
}

impl DestinationsFile {
    /// Parses and checks a settings file; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self, String> {
        let file: DestinationsFile = serde_yaml_ng::from_str(text)
            .map_err(|error| format!("destination settings ({source_name}) are invalid: {error}"))?;
        if file.version.trim().is_empty() {
            return Err(format!("destination settings ({source_name}) have an empty version"));
        }
        Ok(file)
    }

    /// Returns the settings of one destination with the overrides applied.
    pub fn settings_for(&self, destination: &str, overrides: &Overrides) -> Result<DestinationSettings, String> {
        let mut settings = self.destinations.get(destination).cloned().ok_or_else(|| {
            format!(
                "destination {destination:?} is not in the destination settings (version {}); known: {}",
                self.version,
                self.destinations.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        match &mut settings {
            DestinationSettings::Quickbooks(s) => {
                override_with(&mut s.base_url, &overrides.base_url);
                override_with(&mut s.token_url, &overrides.token_url);
            }
            DestinationSettings::Xero(s) => {
                override_with(&mut s.base_url, &overrides.base_url);
                override_with(&mut s.token_url, &overrides.token_url);
            }
            DestinationSettings::HttpJson(s) => override_with(&mut s.url, &overrides.base_url),
            DestinationSettings::Hubspot(s) => override_with(&mut s.base_url, &overrides.base_url),
            DestinationSettings::Alerts(s) => override_with(&mut s.wecom_base_url, &overrides.wecom_base_url),
        }
        Ok(settings)
    }
}

fn override_with(target: &mut String, value: &Option<String>) {
    if let Some(value) = value.as_ref().filter(|value| !value.trim().is_empty()) {
        *target = value.trim().to_owned();
    }
}

/// The dependencies of an adapter besides its settings.
pub struct Dependencies {
    pub http: HttpClient,
    pub secrets: Arc<dyn SecretStore>,
    /// The document table, for OAuth refresh locks.
    pub store: Arc<dyn VersionedStore>,
    /// `CREDENTIALS_SECRET_ARN`.
    pub credentials_secret: Option<String>,
    /// `WECOM_KEY_SECRET_ARN`.
    pub wecom_secret: Option<String>,
    pub mailer: Option<Arc<dyn MailSender>>,
    /// `ALERT_EMAIL_FROM`.
    pub email_from: Option<String>,
    /// `ALERT_EMAIL_TO`, comma-separated.
    pub email_to: Vec<String>,
    pub locale: AlertLocale,
}

/// Builds the adapter the settings describe.
pub fn build_destination(settings: DestinationSettings, deps: Dependencies) -> Result<Arc<dyn Destination>, String> {
    let credentials = || {
        deps.credentials_secret
            .clone()
            .ok_or_else(|| "CREDENTIALS_SECRET_ARN is not set; this destination needs its credential secret".to_owned())
    };
    let destination: Arc<dyn Destination> = match settings {
        DestinationSettings::Quickbooks(settings) => {
            let oauth = OAuthConfig::new("quickbooks", &settings.token_url, &credentials()?);
            let oauth = Arc::new(OAuthClient::new(oauth, deps.http.clone(), deps.secrets, deps.store));
            Arc::new(QuickBooks::new(settings, deps.http, oauth))
        }
        DestinationSettings::Xero(settings) => {
            let oauth = OAuthConfig::new("xero", &settings.token_url, &credentials()?);
            let oauth = Arc::new(OAuthClient::new(oauth, deps.http.clone(), deps.secrets, deps.store));
            Arc::new(Xero::new(settings, deps.http, oauth))
        }
        DestinationSettings::HttpJson(settings) => Arc::new(GenericHttp::new(
            settings,
            deps.http,
            deps.secrets,
            deps.credentials_secret.clone(),
        )),
        DestinationSettings::Hubspot(settings) => {
            Arc::new(HubSpot::new(settings, deps.http, deps.secrets, &credentials()?))
        }
        DestinationSettings::Alerts(settings) => {
            let wecom = deps.wecom_secret.as_deref().map(|secret| {
                let robot = WeComRobot::new(
                    &settings.wecom_base_url,
                    deps.http.clone(),
                    deps.secrets.clone(),
                    secret,
                );
                let robot = match settings.wecom_rate_limit {
                    Some(limit) => robot.with_rate_limit(limit),
                    None => robot,
                };
                Arc::new(robot)
            });
            let email = match (deps.mailer, deps.email_from, deps.email_to.is_empty()) {
                (Some(mailer), Some(from), false) => Some(EmailChannel {
                    mailer,
                    from,
                    to: deps.email_to,
                }),
                _ => None,
            };
            if wecom.is_none() && email.is_none() {
                return Err(
                    "the alerts destination has no channel: set WECOM_KEY_SECRET_ARN, or ALERT_EMAIL_FROM and ALERT_EMAIL_TO"
                        .into(),
                );
            }
            Arc::new(AlertChannels {
                locale: deps.locale,
                wecom,
                email,
            })
        }
    };
    Ok(destination)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_settings_cover_every_default_destination() {
        let file = DestinationsFile::from_yaml(BUNDLED_DESTINATIONS, "bundled").unwrap();

        for destination in crate::rules::DEFAULT_DESTINATIONS {
            assert!(
                file.settings_for(destination, &Overrides::default()).is_ok(),
                "{destination} is missing"
            );
        }
        assert!(matches!(
            file.destinations["accounting"],
            DestinationSettings::Quickbooks(_)
        ));
    }

    #[test]
    fn overrides_replace_urls() {
        let file = DestinationsFile::from_yaml(BUNDLED_DESTINATIONS, "bundled").unwrap();
        let overrides = Overrides {
            base_url: Some("http://127.0.0.1:9001".into()),
            token_url: Some("http://127.0.0.1:9001/oauth2/v1/tokens/bearer".into()),
            wecom_base_url: None,
        };

        let DestinationSettings::Quickbooks(settings) = file.settings_for("accounting", &overrides).unwrap() else {
            panic!("QuickBooks");
        };

        assert_eq!(settings.base_url, "http://127.0.0.1:9001");
        assert_eq!(settings.token_url, "http://127.0.0.1:9001/oauth2/v1/tokens/bearer");
    }

    #[test]
    fn unknown_members_and_destinations_are_errors() {
        let typo = "version: v\ndestinations:\n  crm:\n    kind: hubspot\n    base_url: x\n    properties: {}\n    propertise: {}\n";
        assert!(
            DestinationsFile::from_yaml(typo, "test")
                .unwrap_err()
                .contains("propertise")
        );

        let unknown_kind = "version: v\ndestinations:\n  crm:\n    kind: salesforce\n";
        assert!(DestinationsFile::from_yaml(unknown_kind, "test").is_err());

        let file = DestinationsFile::from_yaml(BUNDLED_DESTINATIONS, "bundled").unwrap();
        let error = file.settings_for("erp", &Overrides::default()).unwrap_err();
        assert!(error.contains("known: accounting"), "{error}");
    }
}
