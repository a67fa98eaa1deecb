//! A generic HTTP JSON destination (the China accounting system, ERPs):
//! `POST` the mapped bill as JSON to a configured URL.
//!
//! Headers come from the settings; a header value may contain `{secret}`,
//! replaced by the credential read from Secrets Manager (for example
//! `Authorization: Bearer {secret}`). Every request carries the message's
//! idempotency key as `Idempotency-Key`. 2xx is success; 408, 429, 5xx and
//! network errors are retryable (honouring `Retry-After`); other 4xx are permanent.
//!
//! NOTE: a generic endpoint has no lookup this adapter knows of, so a retry
//! after an unconfirmed attempt relies on the endpoint honouring `Idempotency-Key`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::budget::{BudgetScope, RateLimit};
use super::destination::{Delivered, Delivery, Destination};
use super::error::DispatchError;
use super::http::{HttpClient, classify_status};
use super::ports::SecretStore;
use crate::auth::token_from_secret;
use crate::bill::{Bill, map_bill};
use crate::rules::Approval;

/// Settings of a generic JSON destination (`kind: http_json` in `infra/destinations.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSettings {
    /// The URL bills are posted to.
    pub url: String,
    /// Extra request headers; `{secret}` in a value is replaced by the credential.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The member of the response body that contains the created object's id.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// An optional shared budget for the endpoint.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

fn default_id_field() -> String {
    "id".to_owned()
}

/// The JSON document posted to the endpoint.
#[derive(Debug, Serialize)]
pub struct GenericBill<'a> {
    pub source: &'static str,
    pub document_id: i64,
    pub idempotency_key: &'a str,
    /// `required` or `skip`.
    pub approval: Approval,
    pub review_required: bool,
    pub bill: &'a Bill,
}

/// The generic JSON destination.
pub struct GenericHttp {
    settings: GenericSettings,
    http: HttpClient,
    secrets: Arc<dyn SecretStore>,
    secret_id: Option<String>,
    secret: tokio::sync::OnceCell<String>,
}

impl GenericHttp {
    pub fn new(
        settings: GenericSettings,
        http: HttpClient,
        secrets: Arc<dyn SecretStore>,
        secret_id: Option<String>,
    ) -> Self {
        GenericHttp {
            settings,
            http,
            secrets,
            secret_id,
            secret: tokio::sync::OnceCell::new(),
        }
    }

    async fn secret(&self) -> Result<Option<String>, DispatchError> {
        let Some(secret_id) = &self.secret_id else {
            return Ok(None);
        };
        let value = self
            .secret
            .get_or_try_init(|| async {
                let text = self.secrets.read(secret_id).await?;
                Ok::<_, DispatchError>(token_from_secret(&text))
            })
            .await?;
        Ok(Some(value.clone()))
    }
}

#[async_trait]
impl Destination for GenericHttp {
    fn kind(&self) -> &'static str {
        "http_json"
    }

    async fn budget(&self) -> Result<Option<BudgetScope>, DispatchError> {
        Ok(self.settings.rate_limit.map(|limit| {
            let account = hex::encode(&sha2::Sha256::digest(self.settings.url.as_bytes())[..8]);
            BudgetScope::new("http_json", &account, limit)
        }))
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Delivered, DispatchError> {
        let (message, document) = delivery.routed()?;
        let bill = map_bill(document, &message.decision.annotations)
            .map_err(|error| DispatchError::permanent(error.to_string()))?;
        let payload = GenericBill {
            source: "recordengine-bridge",
            document_id: bill.document_id,
            idempotency_key: &delivery.idempotency_key,
            approval: message.approval,
            review_required: bill.needs_review(),
            bill: &bill,
        };
        let body = serde_json::to_string(&payload)
            .map_err(|error| DispatchError::permanent(format!("the bill does not serialise: {error}")))?;

        let display = format!("the {} endpoint", delivery.destination);
        let secret = self.secret().await?;
        let mut request = self
            .http
            .request(Method::POST, &self.settings.url, &display)?
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .header("Idempotency-Key", &delivery.idempotency_key);
        for (name, value) in &self.settings.headers {
            let value = match (&secret, value.contains("{secret}")) {
                (Some(secret), true) => value.replace("{secret}", secret),
                (None, true) => {
                    return Err(DispatchError::permanent(format!(
                        "header {name} uses {{secret}} but no credential secret is configured"
                    )));
                }
                (_, false) => value.clone(),
            };
            request = request.header(name, value);
        }
        delivery.spend_request().await?;
        let reply = self.http.send(request.body(body), &display).await?;
        if !reply.is_success() {
            return Err(classify_status(&reply, &display));
        }

        let remote_id = reply
            .json()
            .and_then(|body| body.get(&self.settings.id_field).cloned())
            .and_then(|id| match id {
                serde_json::Value::String(text) => Some(text),
                serde_json::Value::Number(number) => Some(number.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| format!("HTTP {}", reply.status));
        Ok(Delivered {
            detail: format!("accepted as {remote_id} (HTTP {})", reply.status),
            remote_id,
        })
    }
}
