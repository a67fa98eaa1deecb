//! Known credentials for the local stack: generated per run, put into the
//! stack's secrets, and given to the local servers so that they accept them.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use bridge_shared::aws::sdk_error_text;
use serde::{Deserialize, Serialize};

use super::stack::{DeployedStack, LocalClients};
use super::wiring::{LocalServer, SecretRole, Wiring};

/// Credentials of one local-stack run. None of them is valid anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalCredentials {
    /// Sent by the RecordEngine simulator as `Authorization: Bearer <token>`.
    pub webhook_token: String,
    /// Required by the simulator's document API.
    pub recordengine_api_token: String,
    /// The refresh token the QuickBooks sink accepts first.
    pub quickbooks_refresh_token: String,
    /// The refresh token the Xero sink accepts first.
    pub xero_refresh_token: String,
    pub hubspot_token: String,
    /// The only robot key the WeCom sink accepts.
    pub wecom_key: String,
    pub generic_token: String,
}

impl LocalCredentials {
    pub fn generate() -> LocalCredentials {
        let token = |prefix: &str| format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        LocalCredentials {
            webhook_token: token("devstack-webhook"),
            recordengine_api_token: token("devstack-recordengine"),
            quickbooks_refresh_token: token("devstack-quickbooks-refresh"),
            xero_refresh_token: token("devstack-xero-refresh"),
            hubspot_token: token("devstack-hubspot"),
            wecom_key: token("devstack-wecom"),
            generic_token: token("devstack-generic"),
        }
    }
}

/// Builds the secret value for a role. OAuth secrets follow the layout the
/// dispatchers read: client credentials, a refresh token and the account id.
fn secret_value(role: SecretRole, credentials: &LocalCredentials) -> String {
    let oauth = |refresh_token: &str, account_field: &str, account: &str| {
        serde_json::json!({
            "client_id": "devstack-client",
            "client_secret": "devstack-client-secret",
            "refresh_token": refresh_token,
            account_field: account,
        })
        .to_string()
    };
    match role {
        SecretRole::WebhookToken => credentials.webhook_token.clone(),
        SecretRole::RecordEngineApiToken => credentials.recordengine_api_token.clone(),
        SecretRole::QuickBooksOAuth => oauth(&credentials.quickbooks_refresh_token, "realm_id", "devstack-realm"),
        SecretRole::XeroOAuth => oauth(&credentials.xero_refresh_token, "tenant_id", "devstack-tenant"),
        SecretRole::HubSpotToken => credentials.hubspot_token.clone(),
        SecretRole::WeComKey => credentials.wecom_key.clone(),
        SecretRole::GenericToken => credentials.generic_token.clone(),
    }
}

/// The secrets of the stack: those given a known value, and those left as deployed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeedReport {
    /// Logical id to the credential the secret now contains.
    pub seeded: BTreeMap<String, SecretRole>,
    /// Secrets no rule matches; they keep the value the template generated.
    pub left_as_deployed: Vec<String>,
}

/// Puts the run's credentials into the stack's secrets, choosing each value
/// by the credential the secret contains (see [`Wiring`]), and seeds the OAuth sinks with
/// the refresh tokens now stored in the QuickBooks and Xero secrets.
pub async fn seed_secrets(
    clients: &LocalClients,
    stack: &DeployedStack,
    wiring: &Wiring,
    credentials: &LocalCredentials,
    base_urls: &BTreeMap<LocalServer, String>,
) -> Result<SeedReport> {
    let mut report = SeedReport::default();
    let mut oauth_sinks = Vec::new();
    for secret in stack.resources_of_type("AWS::SecretsManager::Secret") {
        let Some(role) = wiring.secrets.get(&secret.logical_id).copied() else {
            tracing::info!(secret = %secret.logical_id, "no function variable names this secret's credential; it keeps its deployed value");
            report.left_as_deployed.push(secret.logical_id.clone());
            continue;
        };
        clients
            .secrets
            .put_secret_value()
            .secret_id(&secret.physical_id)
            .secret_string(secret_value(role, credentials))
            .send()
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "PutSecretValue {} ({}): {}",
                    secret.logical_id,
                    secret.physical_id,
                    sdk_error_text(&error)
                )
            })?;
        match role {
            SecretRole::QuickBooksOAuth => {
                oauth_sinks.push((LocalServer::QuickBooks, &credentials.quickbooks_refresh_token))
            }
            SecretRole::XeroOAuth => oauth_sinks.push((LocalServer::Xero, &credentials.xero_refresh_token)),
            _ => {}
        }
        report.seeded.insert(secret.logical_id.clone(), role);
    }

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build an HTTP client")?;
    for (server, refresh_token) in oauth_sinks {
        let Some(base) = base_urls.get(&server) else {
            continue;
        };
        let url = format!("{base}/_oauth/seed");
        let response = http
            .post(&url)
            .json(&serde_json::json!({ "refresh_token": refresh_token }))
            .send()
            .await
            .with_context(|| format!("POST {url} failed"))?;
        if !response.status().is_success() {
            anyhow::bail!("POST {url} returned {}", response.status());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_secret_layout() {
        let credentials = LocalCredentials::generate();

        let value: serde_json::Value =
            serde_json::from_str(&secret_value(SecretRole::XeroOAuth, &credentials)).unwrap();

        assert_eq!(value["refresh_token"], credentials.xero_refresh_token.as_str());
        assert_eq!(value["tenant_id"], "devstack-tenant");
        assert!(value["client_id"].is_string());
    }
}
