//! What the SAM template declares that matters before a deploy: its
//! parameters, and the literal URLs in function environments.
//!
//! The template is read as plain YAML. CloudFormation's short-form tags
//! (`!Ref`, `!Sub`, `!GetAtt`) come through as tagged values, which is enough
//! to find strings without resolving them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_yaml_ng::Value;

/// One entry of the template's `Parameters` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateParameter {
    pub name: String,
    /// `String`, `Number`, `CommaDelimitedList`, …
    pub kind: String,
    /// The default as text; numbers and lists are rendered as CloudFormation passes them.
    pub default: Option<String>,
    pub description: Option<String>,
}

/// A string in a function's environment that contains `://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentUrl {
    /// The function's logical id, or `Globals` for the global environment.
    pub function: String,
    pub variable: String,
    pub value: String,
}

/// The value of one environment variable, as far as it can be read without deploying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentValue {
    Literal(String),
    /// `!Ref <name>` of a parameter or resource.
    Ref(String),
    /// Any other intrinsic function.
    Expression,
}

/// The environment variables one function declares (without the global ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionEnvironment {
    pub logical_id: String,
    pub variables: BTreeMap<String, EnvironmentValue>,
}

/// The parts of a template that the local stack checks and fills in.
#[derive(Debug, Clone, Default)]
pub struct TemplateSummary {
    pub parameters: Vec<TemplateParameter>,
    pub environment_urls: Vec<EnvironmentUrl>,
    pub functions: Vec<FunctionEnvironment>,
}

impl TemplateSummary {
    pub fn read(path: &Path) -> Result<TemplateSummary> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the SAM template {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid SAM template {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<TemplateSummary> {
        let root: Value = serde_yaml_ng::from_str(text).context("the template is not valid YAML")?;
        let Some(root) = root.as_mapping() else {
            bail!("the template is not a YAML mapping");
        };

        let mut summary = TemplateSummary::default();
        if let Some(parameters) = root.get("Parameters").and_then(Value::as_mapping) {
            for (name, body) in parameters {
                let name = name.as_str().context("a parameter name is not a string")?.to_owned();
                summary.parameters.push(TemplateParameter {
                    kind: body.get("Type").and_then(Value::as_str).unwrap_or("String").to_owned(),
                    default: body.get("Default").map(scalar_text),
                    description: body.get("Description").and_then(Value::as_str).map(str::to_owned),
                    name,
                });
            }
        }

        let global_variables = root
            .get("Globals")
            .and_then(|globals| globals.get("Function"))
            .and_then(|function| function.get("Environment"))
            .and_then(|environment| environment.get("Variables"));
        if let Some(variables) = global_variables {
            collect_environment_urls("Globals", variables, &mut summary.environment_urls);
        }

        if let Some(resources) = root.get("Resources").and_then(Value::as_mapping) {
            for (logical_id, resource) in resources {
                let kind = resource.get("Type").and_then(Value::as_str).unwrap_or_default();
                if kind != "AWS::Serverless::Function" && kind != "AWS::Lambda::Function" {
                    continue;
                }
                let variables = resource
                    .get("Properties")
                    .and_then(|properties| properties.get("Environment"))
                    .and_then(|environment| environment.get("Variables"));
                let Some(logical_id) = logical_id.as_str() else {
                    continue;
                };
                let mut function = FunctionEnvironment {
                    logical_id: logical_id.to_owned(),
                    variables: BTreeMap::new(),
                };
                if let Some(variables) = variables {
                    collect_environment_urls(logical_id, variables, &mut summary.environment_urls);
                    for (name, value) in variables.as_mapping().into_iter().flatten() {
                        if let Some(name) = name.as_str() {
                            function.variables.insert(name.to_owned(), environment_value(value));
                        }
                    }
                }
                summary.functions.push(function);
            }
        }
        Ok(summary)
    }

    pub fn parameter(&self, name: &str) -> Option<&TemplateParameter> {
        self.parameters.iter().find(|parameter| parameter.name == name)
    }
}

/// Reads a variable's value: a plain scalar, `!Ref X` or `{"Ref": "X"}`, or something else.
fn environment_value(value: &Value) -> EnvironmentValue {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => EnvironmentValue::Literal(scalar_text(value)),
        Value::Tagged(tagged) if tagged.tag == "Ref" => match tagged.value.as_str() {
            Some(name) => EnvironmentValue::Ref(name.to_owned()),
            None => EnvironmentValue::Expression,
        },
        Value::Mapping(entries) if entries.len() == 1 => match entries.get("Ref").and_then(Value::as_str) {
            Some(name) => EnvironmentValue::Ref(name.to_owned()),
            None => EnvironmentValue::Expression,
        },
        _ => EnvironmentValue::Expression,
    }
}

/// Renders a parameter default as CloudFormation receives it.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => String::new(),
        Value::Sequence(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(","),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_owned(),
    }
}

fn collect_environment_urls(function: &str, variables: &Value, found: &mut Vec<EnvironmentUrl>) {
    let Some(variables) = variables.as_mapping() else {
        return;
    };
    for (variable, value) in variables {
        let Some(variable) = variable.as_str() else {
            continue;
        };
        let mut strings = Vec::new();
        collect_strings(value, &mut strings);
        for text in strings.into_iter().filter(|text| text.contains("://")) {
            found.push(EnvironmentUrl {
                function: function.to_owned(),
                variable: variable.to_owned(),
                value: text,
            });
        }
    }
}

/// Collects every string inside a value, including those under tags such as `!Sub`.
fn collect_strings(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => found.push(text.clone()),
        Value::Sequence(items) => items.iter().for_each(|item| collect_strings(item, found)),
        Value::Mapping(entries) => entries.values().for_each(|item| collect_strings(item, found)),
        Value::Tagged(tagged) => collect_strings(&tagged.value, found),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  RecordEngineBaseUrl:
    Type: String
    Description: Base URL of RecordEngine.
  MaxReceiveCount:
    Type: Number
    Default: 5
  Emails:
    Type: CommaDelimitedList
    Default: [a@example.com, b@example.com]
Globals:
  Function:
    Environment:
      Variables:
        TABLE: !Ref Table
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  QuickBooksFunction:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          TOKEN_URL: https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer
          API: !Sub "https://${AWS::Region}.example.com/v3"
          QUEUE: !Ref Queue
          DESTINATION: accounting
          LONG: { "Ref": "Table" }
"#;

    #[test]
    fn parameters_and_defaults() {
        let summary = TemplateSummary::parse(TEMPLATE).unwrap();

        let names: Vec<_> = summary.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["RecordEngineBaseUrl", "MaxReceiveCount", "Emails"]);
        assert_eq!(summary.parameter("RecordEngineBaseUrl").unwrap().default, None);
        assert_eq!(
            summary.parameter("MaxReceiveCount").unwrap().default.as_deref(),
            Some("5")
        );
        assert_eq!(
            summary.parameter("Emails").unwrap().default.as_deref(),
            Some("a@example.com,b@example.com")
        );
    }

    #[test]
    fn environment_urls_include_tagged_strings() {
        let summary = TemplateSummary::parse(TEMPLATE).unwrap();

        let found: Vec<_> = summary
            .environment_urls
            .iter()
            .map(|url| (url.function.as_str(), url.variable.as_str()))
            .collect();
        assert_eq!(
            found,
            [("QuickBooksFunction", "TOKEN_URL"), ("QuickBooksFunction", "API")]
        );
    }

    #[test]
    fn function_variables_are_read() {
        let summary = TemplateSummary::parse(TEMPLATE).unwrap();

        let function = &summary.functions[0];
        assert_eq!(function.logical_id, "QuickBooksFunction");
        assert_eq!(function.variables["QUEUE"], EnvironmentValue::Ref("Queue".to_owned()));
        assert_eq!(function.variables["LONG"], EnvironmentValue::Ref("Table".to_owned()));
        assert_eq!(
            function.variables["DESTINATION"],
            EnvironmentValue::Literal("accounting".to_owned())
        );
        assert_eq!(function.variables["API"], EnvironmentValue::Expression);
    }

    #[test]
    fn repository_template_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let summary = TemplateSummary::read(&path).unwrap();

        assert!(summary.parameter("WebhookAuthMode").is_some());
    }
}
