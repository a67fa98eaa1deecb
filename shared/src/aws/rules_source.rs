use std::collections::BTreeSet;

use super::{Clients, sdk_error_text};
use crate::rules::{BUNDLED_RULES, RuleSet, RulesError};

/// Loads the routing rules named by `source`, or the bundled default:
///
/// - unset: `infra/routing-rules.yaml` as compiled into the function;
/// - `s3://<bucket>/<key>`: a YAML object in S3;
/// - `ssm:<parameter name>`: a String parameter in SSM Parameter Store.
pub async fn load_rule_set(
    source: Option<&str>,
    clients: &Clients,
    destinations: &BTreeSet<String>,
) -> Result<RuleSet, RulesError> {
    let Some(source) = source else {
        return RuleSet::from_yaml(BUNDLED_RULES, "bundled infra/routing-rules.yaml", destinations);
    };
    let fail = |message: String| RulesError {
        source_name: source.to_owned(),
        message,
    };

    let text = if let Some(location) = source.strip_prefix("s3://") {
        let (bucket, key) = location
            .split_once('/')
            .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
            .ok_or_else(|| fail("write the S3 location as s3://<bucket>/<key>".into()))?;
        let object = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| fail(format!("S3 GetObject failed: {}", sdk_error_text(&error))))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|error| fail(format!("S3 GetObject failed: {error}")))?
            .into_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|_| fail("the object is not UTF-8 text".into()))?
    } else if let Some(name) = source.strip_prefix("ssm:") {
        let parameter = clients
            .ssm
            .get_parameter()
            .name(name)
            .send()
            .await
            .map_err(|error| fail(format!("SSM GetParameter failed: {}", sdk_error_text(&error))))?;
        parameter
            .parameter()
            .and_then(|parameter| parameter.value())
            .map(str::to_owned)
            .ok_or_else(|| fail("the parameter has no value".into()))?
    } else {
        return Err(fail(
            "ROUTING_RULES_SOURCE must be s3://<bucket>/<key> or ssm:<parameter name>, or unset for the bundled rules"
                .into(),
        ));
    };

    RuleSet::from_yaml(&text, source, destinations)
}
