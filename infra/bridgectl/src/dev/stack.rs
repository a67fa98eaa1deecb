//! The deployed stack as the emulator's CloudFormation API reports it: its
//! outputs, its resources and the processed (SAM-transformed) template.
//! Everything the local stack wires up is read from here, not from a second
//! list of functions and queues.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::types::TemplateStage;
use bridge_shared::aws::{LoopbackGuard, is_loopback_url, sdk_error_text};

use super::emulator::REGION;

/// AWS SDK configuration aimed at the emulator, with dummy credentials.
pub fn local_sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_cloudformation::config::SharedCredentialsProvider::new(
            aws_sdk_cloudformation::config::Credentials::new("test", "test", None, None, "bridgectl-dev"),
        ))
        .build()
}

/// The SDK clients the local stack uses, each refusing any host but 127.0.0.1.
#[derive(Debug, Clone)]
pub struct LocalClients {
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub scheduler: aws_sdk_scheduler::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl LocalClients {
    pub fn new(endpoint: &str) -> Result<LocalClients> {
        if !is_loopback_url(endpoint) {
            bail!("refusing to use {endpoint} as the local AWS endpoint: only http://127.0.0.1:<port> is allowed");
        }
        let config = local_sdk_config(endpoint);
        macro_rules! client {
            ($krate:ident) => {
                $krate::Client::from_conf(
                    $krate::config::Builder::from(&config)
                        .interceptor(LoopbackGuard)
                        .build(),
                )
            };
        }
        Ok(LocalClients {
            cloudformation: client!(aws_sdk_cloudformation),
            lambda: client!(aws_sdk_lambda),
            scheduler: client!(aws_sdk_scheduler),
            eventbridge: client!(aws_sdk_eventbridge),
            secrets: client!(aws_sdk_secretsmanager),
        })
    }
}

/// One resource of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackResource {
    pub logical_id: String,
    pub physical_id: String,
    pub resource_type: String,
}

/// A deployed stack as the emulator reports it.
#[derive(Debug, Clone)]
pub struct DeployedStack {
    pub name: String,
    pub outputs: BTreeMap<String, String>,
    /// Parameter values the stack was deployed with.
    pub parameters: BTreeMap<String, String>,
    pub resources: Vec<StackResource>,
    /// The template after the SAM transform, as JSON.
    pub template: serde_json::Value,
}

impl DeployedStack {
    pub async fn read(clients: &LocalClients, name: &str) -> Result<DeployedStack> {
        let cloudformation = &clients.cloudformation;
        let described = cloudformation
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("DescribeStacks {name}: {}", sdk_error_text(&error)))?;
        let stack = described
            .stacks()
            .first()
            .with_context(|| format!("stack {name} not found on the emulator"))?;
        let outputs = stack
            .outputs()
            .iter()
            .filter_map(|output| Some((output.output_key()?.to_owned(), output.output_value()?.to_owned())))
            .collect();
        let parameters = stack
            .parameters()
            .iter()
            .filter_map(|parameter| {
                Some((
                    parameter.parameter_key()?.to_owned(),
                    parameter.parameter_value().unwrap_or_default().to_owned(),
                ))
            })
            .collect();

        let mut resources = Vec::new();
        let mut pages = cloudformation
            .list_stack_resources()
            .stack_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|error| anyhow::anyhow!("ListStackResources {name}: {}", sdk_error_text(&error)))?;
            for summary in page.stack_resource_summaries() {
                resources.push(StackResource {
                    logical_id: summary.logical_resource_id().unwrap_or_default().to_owned(),
                    physical_id: summary.physical_resource_id().unwrap_or_default().to_owned(),
                    resource_type: summary.resource_type().unwrap_or_default().to_owned(),
                });
            }
        }

        let body = cloudformation
            .get_template()
            .stack_name(name)
            .template_stage(TemplateStage::Processed)
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("GetTemplate {name}: {}", sdk_error_text(&error)))?
            .template_body
            .with_context(|| format!("GetTemplate {name} returned no template body"))?;
        let template =
            parse_template_body(&body).with_context(|| format!("cannot read the processed template of {name}"))?;

        Ok(DeployedStack {
            name: name.to_owned(),
            outputs,
            parameters,
            resources,
            template,
        })
    }

    pub fn resource(&self, logical_id: &str) -> Option<&StackResource> {
        self.resources.iter().find(|resource| resource.logical_id == logical_id)
    }

    pub fn resources_of_type<'a>(&'a self, resource_type: &'a str) -> impl Iterator<Item = &'a StackResource> + 'a {
        self.resources
            .iter()
            .filter(move |resource| resource.resource_type == resource_type)
    }

    /// Lists the Lambda functions.
    pub fn functions(&self) -> Vec<&StackResource> {
        self.resources_of_type("AWS::Lambda::Function").collect()
    }

    /// Returns a resource's `Properties` in the processed template.
    pub fn template_properties(&self, logical_id: &str) -> Option<&serde_json::Value> {
        self.template.get("Resources")?.get(logical_id)?.get("Properties")
    }

    /// Finds a function by logical id or function name, ignoring case.
    pub fn find_function(&self, name: &str) -> Result<&StackResource> {
        let functions = self.functions();
        functions
            .iter()
            .find(|function| {
                function.logical_id.eq_ignore_ascii_case(name) || function.physical_id.eq_ignore_ascii_case(name)
            })
            .copied()
            .with_context(|| {
                format!(
                    "function {name:?} not found in stack {}; its functions are: {}",
                    self.name,
                    functions
                        .iter()
                        .map(|function| function.logical_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// Reads a template body, which CloudFormation returns as JSON or YAML.
fn parse_template_body(body: &str) -> Result<serde_json::Value> {
    if let Ok(value) = serde_json::from_str(body) {
        return Ok(value);
    }
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(body).context("the template is neither JSON nor YAML")?;
    serde_json::to_value(yaml).context("the template cannot be represented as JSON")
}
