//! How the template's functions reach systems outside AWS, and which local
//! server replaces each: the one place that maps template parameters
//! and secrets to the local stack.
//!
//! The mapping follows the template rather than a list of names. A function
//! variable such as `DESTINATION_BASE_URL: !Ref AccountingBaseUrl` shows that
//! the parameter `AccountingBaseUrl` is a destination's base URL. The
//! function's `DESTINATION` variable names the destination, and
//! `infra/destinations.yaml` gives its kind (`quickbooks`, `xero`, …), which
//! selects the sink. A parameter or function added later is wired up without
//! a change here, as long as it uses these variables.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bridge_devstack::sinks::quickbooks::QUICKBOOKS_TOKEN_PATH;
use serde::Serialize;

use super::safety::{CheckedValue, names_a_host};
use super::template::{EnvironmentValue, TemplateSummary};

/// A local server that replaces a system outside AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalServer {
    RecordEngine,
    QuickBooks,
    Xero,
    HubSpot,
    Generic,
    WeCom,
}

impl LocalServer {
    pub const ALL: [LocalServer; 6] = [
        LocalServer::RecordEngine,
        LocalServer::QuickBooks,
        LocalServer::Xero,
        LocalServer::HubSpot,
        LocalServer::Generic,
        LocalServer::WeCom,
    ];

    /// Returns the name used in `endpoints.json` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            LocalServer::RecordEngine => "recordengine",
            LocalServer::QuickBooks => "quickbooks",
            LocalServer::Xero => "xero",
            LocalServer::HubSpot => "hubspot",
            LocalServer::Generic => "generic",
            LocalServer::WeCom => "wecom",
        }
    }
}

/// The credential a secret contains, and so the value the local stack puts in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRole {
    /// The token RecordEngine sends to the webhook.
    WebhookToken,
    /// RecordEngine's API token.
    RecordEngineApiToken,
    /// QuickBooks OAuth credentials with `realm_id`.
    QuickBooksOAuth,
    /// Xero OAuth credentials with `tenant_id`.
    XeroOAuth,
    HubSpotToken,
    /// The bearer token of a generic JSON destination.
    GenericToken,
    WeComKey,
}

/// The variable that names a dispatcher's destination in `infra/destinations.yaml`.
const DESTINATION_VARIABLE: &str = "DESTINATION";

/// The target of a function's URL variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlVariable {
    Server(LocalServer),
    /// The base URL of the function's destination.
    DestinationBase,
    /// The OAuth token endpoint of the function's destination.
    DestinationToken,
}

/// Function variables that hold a URL, and where the local stack points them.
const URL_VARIABLES: &[(&str, UrlVariable)] = &[
    ("RECORDENGINE_BASE_URL", UrlVariable::Server(LocalServer::RecordEngine)),
    ("WECOM_BASE_URL", UrlVariable::Server(LocalServer::WeCom)),
    ("DESTINATION_BASE_URL", UrlVariable::DestinationBase),
    ("DESTINATION_TOKEN_URL", UrlVariable::DestinationToken),
];

/// The content of a function's secret variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretVariable {
    Role(SecretRole),
    /// The credentials of the function's destination, whose kind decides the layout.
    DestinationCredentials,
}

/// Function variables that name a secret, and the credential each secret contains.
const SECRET_VARIABLES: &[(&str, SecretVariable)] = &[
    (
        "WEBHOOK_TOKEN_SECRET_ARN",
        SecretVariable::Role(SecretRole::WebhookToken),
    ),
    (
        "RECORDENGINE_TOKEN_SECRET_ARN",
        SecretVariable::Role(SecretRole::RecordEngineApiToken),
    ),
    ("WECOM_KEY_SECRET_ARN", SecretVariable::Role(SecretRole::WeComKey)),
    ("CREDENTIALS_SECRET_ARN", SecretVariable::DestinationCredentials),
];

/// A destination kind of `infra/destinations.yaml` and its local stand-in.
struct KindWiring {
    kind: &'static str,
    server: LocalServer,
    /// The path of the kind's OAuth token endpoint on the sink, if it has one.
    token_path: Option<&'static str>,
    credentials: SecretRole,
}

/// Xero's token endpoint path, which the Xero sink serves.
const XERO_TOKEN_PATH: &str = "/connect/token";

const KINDS: &[KindWiring] = &[
    KindWiring {
        kind: "quickbooks",
        server: LocalServer::QuickBooks,
        token_path: Some(QUICKBOOKS_TOKEN_PATH),
        credentials: SecretRole::QuickBooksOAuth,
    },
    KindWiring {
        kind: "xero",
        server: LocalServer::Xero,
        token_path: Some(XERO_TOKEN_PATH),
        credentials: SecretRole::XeroOAuth,
    },
    KindWiring {
        kind: "http_json",
        server: LocalServer::Generic,
        token_path: None,
        credentials: SecretRole::GenericToken,
    },
    KindWiring {
        kind: "hubspot",
        server: LocalServer::HubSpot,
        token_path: None,
        credentials: SecretRole::HubSpotToken,
    },
    KindWiring {
        kind: "alerts",
        server: LocalServer::WeCom,
        token_path: None,
        credentials: SecretRole::WeComKey,
    },
];

/// Returns the local server that emulates a destination kind, if the kind is known.
pub fn server_of_kind(kind: &str) -> Option<LocalServer> {
    KINDS
        .iter()
        .find(|wiring| wiring.kind == kind)
        .map(|wiring| wiring.server)
}

/// Destination names and their kinds, from `infra/destinations.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationKinds(pub BTreeMap<String, String>);

impl DestinationKinds {
    pub fn read(path: &Path) -> Result<DestinationKinds> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the destination settings {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid destination settings {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<DestinationKinds> {
        let root: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).context("not valid YAML")?;
        let destinations = root
            .get("destinations")
            .and_then(serde_yaml_ng::Value::as_mapping)
            .context("no `destinations` mapping")?;
        let mut kinds = BTreeMap::new();
        for (name, settings) in destinations {
            let name = name.as_str().context("a destination name is not a string")?;
            let kind = settings
                .get("kind")
                .and_then(serde_yaml_ng::Value::as_str)
                .with_context(|| format!("destination {name} has no kind"))?;
            kinds.insert(name.to_owned(), kind.to_owned());
        }
        Ok(DestinationKinds(kinds))
    }

    fn wiring(&self, function: &str, destination: Option<&str>) -> Result<&'static KindWiring> {
        let destination = destination.with_context(|| {
            format!("function {function} uses a destination variable but sets no literal {DESTINATION_VARIABLE}")
        })?;
        let kind = self.0.get(destination).with_context(|| {
            format!(
                "function {function} has {DESTINATION_VARIABLE}={destination}, which infra/destinations.yaml does not declare"
            )
        })?;
        KINDS
            .iter()
            .find(|wiring| wiring.kind == kind)
            .with_context(|| format!("destination {destination} has kind {kind:?}, for which there is no local sink"))
    }
}

/// The local server and path one parameter is pointed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalTarget {
    pub server: LocalServer,
    /// Appended to the server's base URL.
    pub path: String,
    /// `function.VARIABLE` that made the match, for messages.
    pub used_by: String,
}

/// The template's connections to outside systems, resolved to local servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wiring {
    /// Parameter name to the local server it points at.
    pub parameters: BTreeMap<String, LocalTarget>,
    /// Secret logical id to the credential it contains.
    pub secrets: BTreeMap<String, SecretRole>,
}

impl Wiring {
    /// Follows every function variable of [`URL_VARIABLES`] and
    /// [`SECRET_VARIABLES`] that is a `!Ref` to a parameter or secret.
    /// Fails when one parameter would point at two different servers.
    pub fn from_template(template: &TemplateSummary, kinds: &DestinationKinds) -> Result<Wiring> {
        let mut wiring = Wiring::default();
        for function in &template.functions {
            let destination = match function.variables.get(DESTINATION_VARIABLE) {
                Some(EnvironmentValue::Literal(name)) => Some(name.as_str()),
                _ => None,
            };
            for (variable, value) in &function.variables {
                let EnvironmentValue::Ref(referenced) = value else {
                    continue;
                };
                let used_by = format!("{}.{variable}", function.logical_id);

                if let Some((_, role)) = URL_VARIABLES.iter().find(|(name, _)| name == variable) {
                    if template.parameter(referenced).is_none() {
                        continue;
                    }
                    let (server, token_path) = match role {
                        UrlVariable::Server(server) => (*server, None),
                        UrlVariable::DestinationBase => (kinds.wiring(&function.logical_id, destination)?.server, None),
                        UrlVariable::DestinationToken => {
                            let kind = kinds.wiring(&function.logical_id, destination)?;
                            let path = kind.token_path.with_context(|| {
                                format!("{used_by}: destination kind {} has no OAuth token endpoint", kind.kind)
                            })?;
                            (kind.server, Some(path))
                        }
                    };
                    // A destination URL keeps the default's path (say /api/bills), so
                    // that the sink records requests where the real system gets them.
                    let path = match token_path {
                        Some(path) => path.to_owned(),
                        None => template
                            .parameter(referenced)
                            .and_then(|parameter| parameter.default.as_deref())
                            .map(url_path)
                            .unwrap_or_default(),
                    };
                    wiring.add_parameter(referenced, LocalTarget { server, path, used_by })?;
                } else if let Some((_, role)) = SECRET_VARIABLES.iter().find(|(name, _)| name == variable) {
                    let role = match role {
                        SecretVariable::Role(role) => *role,
                        SecretVariable::DestinationCredentials => {
                            kinds.wiring(&function.logical_id, destination)?.credentials
                        }
                    };
                    wiring.secrets.insert(referenced.clone(), role);
                }
            }
        }
        Ok(wiring)
    }

    fn add_parameter(&mut self, name: &str, target: LocalTarget) -> Result<()> {
        match self.parameters.get(name) {
            Some(existing) if existing.server != target.server || existing.path != target.path => bail!(
                "parameter {name} is used as {} (the local {} server) and as {} (the local {} server); \
                 give each its own parameter",
                existing.used_by,
                existing.server.name(),
                target.used_by,
                target.server.name()
            ),
            Some(_) => Ok(()),
            None => {
                self.parameters.insert(name.to_owned(), target);
                Ok(())
            }
        }
    }
}

/// Returns the path of a URL (`/api/bills` of `https://host/api/bills`), or empty.
fn url_path(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return String::new();
    };
    let path = rest.find('/').map_or("", |index| &rest[index..]);
    path.trim_end_matches('/').to_owned()
}

/// Returns whether a parameter contains a URL or host, judged by its name.
pub fn is_url_parameter(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["url", "uri", "endpoint", "host"]
        .iter()
        .any(|suffix| lower.ends_with(suffix))
}

/// The source of a parameter's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    TemplateDefault,
    LocalServer(LocalServer),
    Override,
}

/// The value one template parameter gets in the local stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedParameter {
    pub name: String,
    pub value: String,
    pub source: ValueSource,
}

/// Resolves every template parameter: the user's override, else the local
/// server the wiring points it at, else the template default.
///
/// Fails on an override of a parameter the template does not declare, and on
/// a parameter that would have no value.
pub fn resolve_parameters(
    template: &TemplateSummary,
    wiring: &Wiring,
    base_urls: &BTreeMap<LocalServer, String>,
    overrides: &BTreeMap<String, String>,
) -> Result<Vec<ResolvedParameter>> {
    let declared: Vec<&str> = template.parameters.iter().map(|p| p.name.as_str()).collect();
    let unknown: Vec<&str> = overrides
        .keys()
        .map(String::as_str)
        .filter(|name| !declared.contains(name))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "--parameter names {} not declared in the template; declared parameters: {}",
            unknown.join(", "),
            declared.join(", ")
        );
    }

    let mut resolved = Vec::new();
    let mut missing = Vec::new();
    for parameter in &template.parameters {
        let local = wiring
            .parameters
            .get(&parameter.name)
            .and_then(|target| Some((target.server, base_urls.get(&target.server)?, &target.path)));
        let (value, source) = if let Some(value) = overrides.get(&parameter.name) {
            (value.clone(), ValueSource::Override)
        } else if let Some((server, base, path)) = local {
            (
                format!("{}{path}", base.trim_end_matches('/')),
                ValueSource::LocalServer(server),
            )
        } else if let Some(default) = &parameter.default {
            (default.clone(), ValueSource::TemplateDefault)
        } else {
            missing.push(parameter.name.as_str());
            continue;
        };
        resolved.push(ResolvedParameter {
            name: parameter.name.clone(),
            value,
            source,
        });
    }
    if !missing.is_empty() {
        bail!(
            "template parameters {} have no default and no local server to point at; \
             pass each with --parameter NAME=VALUE",
            missing.join(", ")
        );
    }
    Ok(resolved)
}

/// The parameter values the loopback check must see: every URL that names a
/// host, and every other non-empty value of a parameter whose name says it
/// contains a URL or host. S3 locations are not checked (see [`names_a_host`]).
pub fn values_to_check(parameters: &[ResolvedParameter]) -> Vec<CheckedValue> {
    parameters
        .iter()
        .filter(|parameter| {
            let value = parameter.value.trim();
            let s3 = value.to_ascii_lowercase().starts_with("s3://");
            names_a_host(value) || (is_url_parameter(&parameter.name) && !value.is_empty() && !s3)
        })
        .map(|parameter| CheckedValue::new(format!("parameter {}", parameter.name), &parameter.value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::safety::check_loopback;

    const TEMPLATE: &str = r#"
Parameters:
  RecordEngineBaseUrl: { Type: String, Default: "" }
  AccountingBaseUrl: { Type: String }
  AccountingTokenUrl: { Type: String }
  ChinaAccountingUrl: { Type: String, Default: https://china-accounting.invalid/api/bills }
  WeComBaseUrl: { Type: String }
  PartnerApiUrl: { Type: String, Default: https://partner.example.com/api }
  LogLevel: { Type: String, Default: info }
  AlertEmail: { Type: String }
Resources:
  WebhookTokenSecret: { Type: AWS::SecretsManager::Secret }
  AccountingCredentialsSecret: { Type: AWS::SecretsManager::Secret }
  ChinaCredentialsSecret: { Type: AWS::SecretsManager::Secret }
  Webhook:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          RECORDENGINE_BASE_URL: !Ref RecordEngineBaseUrl
          WEBHOOK_TOKEN_SECRET_ARN: !Ref WebhookTokenSecret
  DispatchAccounting:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          DESTINATION: accounting
          DESTINATION_BASE_URL: !Ref AccountingBaseUrl
          DESTINATION_TOKEN_URL: !Ref AccountingTokenUrl
          CREDENTIALS_SECRET_ARN: !Ref AccountingCredentialsSecret
          WECOM_BASE_URL: !Ref WeComBaseUrl
  DispatchChina:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          DESTINATION: china-accounting
          DESTINATION_BASE_URL: !Ref ChinaAccountingUrl
          CREDENTIALS_SECRET_ARN: !Ref ChinaCredentialsSecret
"#;

    const DESTINATIONS: &str = r#"
destinations:
  accounting: { kind: quickbooks }
  china-accounting: { kind: http_json, url: https://china-accounting.invalid/api/bills }
"#;

    fn base_urls() -> BTreeMap<LocalServer, String> {
        LocalServer::ALL
            .iter()
            .enumerate()
            .map(|(index, server)| (*server, format!("http://127.0.0.1:{}", 9000 + index)))
            .collect()
    }

    fn wiring(destinations: &str) -> Result<Wiring> {
        let template = TemplateSummary::parse(TEMPLATE).unwrap();
        Wiring::from_template(&template, &DestinationKinds::parse(destinations).unwrap())
    }

    fn resolve(overrides: &[(&str, &str)]) -> Result<Vec<ResolvedParameter>> {
        let template = TemplateSummary::parse(TEMPLATE).unwrap();
        let mut overrides: BTreeMap<String, String> = overrides
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        overrides
            .entry("AlertEmail".to_owned())
            .or_insert_with(|| "ops@example.com".to_owned());
        resolve_parameters(&template, &wiring(DESTINATIONS)?, &base_urls(), &overrides)
    }

    fn value(resolved: &[ResolvedParameter], name: &str) -> String {
        resolved.iter().find(|p| p.name == name).unwrap().value.clone()
    }

    #[test]
    fn destination_urls_follow_the_kind() {
        let resolved = resolve(&[]).unwrap();

        assert_eq!(value(&resolved, "RecordEngineBaseUrl"), "http://127.0.0.1:9000");
        assert_eq!(value(&resolved, "AccountingBaseUrl"), "http://127.0.0.1:9001");
        assert_eq!(
            value(&resolved, "AccountingTokenUrl"),
            "http://127.0.0.1:9001/oauth2/v1/tokens/bearer"
        );
        assert_eq!(
            value(&resolved, "ChinaAccountingUrl"),
            "http://127.0.0.1:9004/api/bills"
        );
        assert_eq!(value(&resolved, "WeComBaseUrl"), "http://127.0.0.1:9005");
        assert_eq!(value(&resolved, "LogLevel"), "info");
    }

    #[test]
    fn xero_kind_uses_the_xero_sink() {
        let destinations = DESTINATIONS.replace("kind: quickbooks", "kind: xero");
        let template = TemplateSummary::parse(TEMPLATE).unwrap();

        let wiring = wiring(&destinations).unwrap();
        let resolved = resolve_parameters(
            &template,
            &wiring,
            &base_urls(),
            &BTreeMap::from([("AlertEmail".to_owned(), "a@example.com".to_owned())]),
        )
        .unwrap();

        assert_eq!(
            value(&resolved, "AccountingTokenUrl"),
            "http://127.0.0.1:9002/connect/token"
        );
        assert_eq!(wiring.secrets["AccountingCredentialsSecret"], SecretRole::XeroOAuth);
    }

    #[test]
    fn secrets_follow_their_variables() {
        let wiring = wiring(DESTINATIONS).unwrap();

        assert_eq!(wiring.secrets["WebhookTokenSecret"], SecretRole::WebhookToken);
        assert_eq!(
            wiring.secrets["AccountingCredentialsSecret"],
            SecretRole::QuickBooksOAuth
        );
        assert_eq!(wiring.secrets["ChinaCredentialsSecret"], SecretRole::GenericToken);
    }

    #[test]
    fn unwired_url_default_is_refused() {
        let resolved = resolve(&[]).unwrap();

        let refusal = check_loopback(&values_to_check(&resolved)).unwrap_err();

        assert_eq!(refusal.refused.len(), 1, "{refusal}");
        assert_eq!(refusal.refused[0].0, "parameter PartnerApiUrl");
    }

    #[test]
    fn real_destination_override_is_refused() {
        let resolved = resolve(&[
            ("AccountingBaseUrl", "https://quickbooks.api.intuit.com"),
            ("PartnerApiUrl", "http://127.0.0.1:1"),
        ])
        .unwrap();

        let refusal = check_loopback(&values_to_check(&resolved)).unwrap_err();

        assert_eq!(refusal.refused.len(), 1, "{refusal}");
        assert_eq!(refusal.refused[0].0, "parameter AccountingBaseUrl");
        assert_eq!(refusal.refused[0].2, "quickbooks.api.intuit.com");
    }

    #[test]
    fn unknown_override_and_missing_value_are_named() {
        let error = resolve(&[("Nope", "x")]).unwrap_err();
        assert!(error.to_string().contains("Nope not declared"), "{error}");

        let template = TemplateSummary::parse(TEMPLATE).unwrap();
        let error = resolve_parameters(
            &template,
            &wiring(DESTINATIONS).unwrap(),
            &base_urls(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("AlertEmail have no default"), "{error}");
    }

    #[test]
    fn undeclared_destination_is_named() {
        let error = wiring("destinations:\n  accounting: { kind: quickbooks }\n").unwrap_err();

        assert!(error.to_string().contains("DESTINATION=china-accounting"), "{error}");
    }

    #[test]
    fn unknown_kind_is_named() {
        let error = wiring(&DESTINATIONS.replace("kind: http_json", "kind: fax")).unwrap_err();

        assert!(error.to_string().contains("kind \"fax\""), "{error}");
    }

    #[test]
    fn repository_wiring_resolves() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let template = TemplateSummary::read(&root.join("template.yaml")).unwrap();
        let kinds = DestinationKinds::read(&root.join("infra/destinations.yaml")).unwrap();

        let wiring = Wiring::from_template(&template, &kinds).unwrap();
        let resolved = resolve_parameters(&template, &wiring, &base_urls(), &BTreeMap::new()).unwrap();

        assert_eq!(check_loopback(&values_to_check(&resolved)), Ok(()));
        assert_eq!(
            wiring.secrets.get("WebhookTokenSecret"),
            Some(&SecretRole::WebhookToken)
        );
    }

    #[test]
    fn url_parameter_names() {
        assert!(is_url_parameter("RecordEngineBaseUrl"));
        assert!(is_url_parameter("SmtpHost"));
        assert!(!is_url_parameter("WebhookAuthMode"));
    }
}
