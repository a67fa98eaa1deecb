//! Corrections to what MiniStack 1.5.33 deploys, where it differs from AWS
//! in a way that would stop the stack from working. Each one restores the
//! value the template sets, and docs/local-stack.md ("Emulator gaps")
//! describes the gap with a reproduction.

use anyhow::{Context, Result};
use aws_sdk_lambda::types::ScalingConfig;
use bridge_shared::aws::sdk_error_text;
use serde_json::Value;

use super::stack::{DeployedStack, LocalClients};

/// Sets `ScalingConfig.MaximumConcurrency` of every SQS event source mapping
/// again, as a number, and returns the logical ids it set.
///
/// MiniStack's CloudFormation provisioner stores the value as CloudFormation
/// resolves it. A `!Ref` to a `Number` parameter resolves to text ("2"), and
/// MiniStack's SQS poller then fails on every pass comparing it with a
/// number, so no event source mapping of the emulator delivers anything.
/// AWS converts the text; the Lambda API of MiniStack accepts only a number.
pub async fn restore_maximum_concurrency(clients: &LocalClients, stack: &DeployedStack) -> Result<Vec<String>> {
    let mut restored = Vec::new();
    for mapping in stack.resources_of_type("AWS::Lambda::EventSourceMapping") {
        let Some(value) = stack
            .template_properties(&mapping.logical_id)
            .and_then(|properties| properties.get("ScalingConfig"))
            .and_then(|scaling| scaling.get("MaximumConcurrency"))
        else {
            continue;
        };
        if value.is_number() {
            continue;
        }
        let text = resolve_text(value, stack).with_context(|| {
            format!(
                "cannot resolve ScalingConfig.MaximumConcurrency of {}: {value}",
                mapping.logical_id
            )
        })?;
        let maximum: i32 = text.trim().parse().with_context(|| {
            format!(
                "ScalingConfig.MaximumConcurrency of {} is {text:?}, not a whole number",
                mapping.logical_id
            )
        })?;
        clients
            .lambda
            .update_event_source_mapping()
            .uuid(&mapping.physical_id)
            .scaling_config(ScalingConfig::builder().maximum_concurrency(maximum).build())
            .send()
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "UpdateEventSourceMapping {} ({}): {}",
                    mapping.logical_id,
                    mapping.physical_id,
                    sdk_error_text(&error)
                )
            })?;
        restored.push(mapping.logical_id.clone());
    }
    Ok(restored)
}

/// Resolves text, or a `Ref` to a parameter: its deployed value, else its default.
fn resolve_text(value: &Value, stack: &DeployedStack) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Object(object) => {
            let name = object.get("Ref")?.as_str()?;
            stack.parameters.get(name).cloned().or_else(|| {
                let default = stack.template.get("Parameters")?.get(name)?.get("Default")?;
                match default {
                    Value::String(text) => Some(text.clone()),
                    Value::Number(number) => Some(number.to_string()),
                    _ => None,
                }
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn stack(parameters: &[(&str, &str)]) -> DeployedStack {
        DeployedStack {
            name: "s".to_owned(),
            outputs: BTreeMap::new(),
            parameters: parameters
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            resources: Vec::new(),
            template: serde_json::json!({"Parameters": {"Limit": {"Type": "Number", "Default": 4}}}),
        }
    }

    #[test]
    fn references_resolve_to_deployed_value() {
        let reference = serde_json::json!({"Ref": "Limit"});

        assert_eq!(
            resolve_text(&reference, &stack(&[("Limit", "2")])).as_deref(),
            Some("2")
        );
        assert_eq!(resolve_text(&reference, &stack(&[])).as_deref(), Some("4"));
        assert_eq!(resolve_text(&serde_json::json!("3"), &stack(&[])).as_deref(), Some("3"));
        assert_eq!(resolve_text(&serde_json::json!({"Fn::Sub": "x"}), &stack(&[])), None);
    }
}
