//! The stack's resources for the operator subcommands (`dlq`, `doc`,
//! `upload`, `sweep`): read from the stack's CloudFormation outputs with
//! `--stack`, or named one by one with options and environment variables,
//! which win over the outputs.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use bridge_shared::aws::{Clients, LoopbackGuard, loopback_only, sdk_error_text};
use clap::Args;

use crate::aws::AwsOptions;

/// Destination names and the stack outputs of their queues and dead-letter queues.
const QUEUE_OUTPUTS: [(&str, &str, &str); 5] = [
    ("accounting", "AccountingQueueUrl", "AccountingDeadLetterQueueUrl"),
    (
        "china-accounting",
        "ChinaAccountingQueueUrl",
        "ChinaAccountingDeadLetterQueueUrl",
    ),
    ("crm", "CrmQueueUrl", "CrmDeadLetterQueueUrl"),
    ("alerts", "AlertsQueueUrl", "AlertsDeadLetterQueueUrl"),
    ("upload", "InboxQueueUrl", "InboxDeadLetterQueueUrl"),
];

/// The options that locate the stack's tables, bucket and queues.
#[derive(Debug, Clone, Default, Args)]
pub struct StackArgs {
    #[command(flatten)]
    pub aws: AwsOptions,
    /// CloudFormation stack whose outputs name the tables, bucket and queues.
    #[arg(long, value_name = "NAME", env = "BRIDGE_STACK")]
    pub stack: Option<String>,
    /// DynamoDB failure table; overrides the stack's FailureTableName output.
    #[arg(long, value_name = "NAME", env = "FAILURE_TABLE")]
    pub failure_table: Option<String>,
    /// DynamoDB document table; overrides the stack's DocumentTableName output.
    #[arg(long, value_name = "NAME", env = "DOCUMENT_TABLE")]
    pub document_table: Option<String>,
    /// S3 bucket of archived webhook bodies; overrides the stack's ArchiveBucketName output.
    #[arg(long, value_name = "NAME", env = "ARCHIVE_BUCKET")]
    pub archive_bucket: Option<String>,
    /// Queue URL of a destination as DESTINATION=URL, such as accounting=https://sqs…;
    /// repeatable; overrides the stack's <Destination>QueueUrl outputs.
    #[arg(long = "queue", value_name = "DESTINATION=URL", value_parser = parse_pair)]
    pub queues: Vec<(String, String)>,
    /// Dead-letter queue URL of a destination as DESTINATION=URL; repeatable; overrides the
    /// stack's <Destination>DeadLetterQueueUrl outputs.
    #[arg(long = "dead-letter-queue", value_name = "DESTINATION=URL", value_parser = parse_pair)]
    pub dead_letter_queues: Vec<(String, String)>,
}

/// Parses `name=value`.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("{text:?} is not of the form DESTINATION=URL")),
    }
}

/// The resolved resources and the AWS clients to reach them.
#[derive(Debug, Clone)]
pub struct Resources {
    pub stack: Option<String>,
    pub failure_table: Option<String>,
    pub document_table: Option<String>,
    pub archive_bucket: Option<String>,
    /// Destination name to queue URL.
    pub queues: BTreeMap<String, String>,
    /// Destination name to dead-letter queue URL.
    pub dead_letter_queues: BTreeMap<String, String>,
    /// Every output of the stack, when `--stack` was given.
    pub outputs: BTreeMap<String, String>,
    /// Every parameter value of the stack, when `--stack` was given.
    pub parameters: BTreeMap<String, String>,
    pub clients: Clients,
    pub sdk_config: SdkConfig,
}

impl StackArgs {
    /// Loads the AWS configuration, reads the stack's outputs when `--stack`
    /// is given, and applies the explicit options over them.
    pub async fn resolve(&self) -> Result<Resources> {
        let sdk_config = self.aws.load().await?;
        self.resolve_with(sdk_config).await
    }

    /// Resolves like [`StackArgs::resolve`], with an AWS configuration the caller
    /// built (the local stack's, for example) instead of `--profile`,
    /// `--region` and `--endpoint-url`.
    pub async fn resolve_with(&self, sdk_config: SdkConfig) -> Result<Resources> {
        let clients = Clients::new(&sdk_config);
        let (outputs, parameters) = match &self.stack {
            Some(stack) => stack_outputs(&sdk_config, stack).await?,
            None => (BTreeMap::new(), BTreeMap::new()),
        };
        let output = |name: &str| outputs.get(name).cloned().filter(|value| !value.is_empty());

        let mut queues = BTreeMap::new();
        let mut dead_letter_queues = BTreeMap::new();
        for (destination, queue_output, dead_letter_output) in QUEUE_OUTPUTS {
            if let Some(url) = output(queue_output) {
                queues.insert(destination.to_owned(), url);
            }
            if let Some(url) = output(dead_letter_output) {
                dead_letter_queues.insert(destination.to_owned(), url);
            }
        }
        queues.extend(self.queues.iter().cloned());
        dead_letter_queues.extend(self.dead_letter_queues.iter().cloned());

        Ok(Resources {
            stack: self.stack.clone(),
            failure_table: self.failure_table.clone().or_else(|| output("FailureTableName")),
            document_table: self.document_table.clone().or_else(|| output("DocumentTableName")),
            archive_bucket: self.archive_bucket.clone().or_else(|| output("ArchiveBucketName")),
            queues,
            dead_letter_queues,
            outputs,
            parameters,
            clients,
            sdk_config,
        })
    }
}

impl Resources {
    fn missing(&self, resource: &str, option: &str, variable: &str, output: &str) -> anyhow::Error {
        let stack_hint = match &self.stack {
            Some(stack) => format!("stack {stack} has no {output} output; "),
            None => format!("or pass --stack NAME to read the stack's {output} output; "),
        };
        anyhow::anyhow!("the {resource} is not known: {stack_hint}pass {option} or set {variable}")
    }

    pub fn failure_table(&self) -> Result<&str> {
        self.failure_table.as_deref().ok_or_else(|| {
            self.missing(
                "failure table",
                "--failure-table NAME",
                "FAILURE_TABLE",
                "FailureTableName",
            )
        })
    }

    pub fn document_table(&self) -> Result<&str> {
        self.document_table.as_deref().ok_or_else(|| {
            self.missing(
                "document table",
                "--document-table NAME",
                "DOCUMENT_TABLE",
                "DocumentTableName",
            )
        })
    }

    pub fn archive_bucket(&self) -> Result<&str> {
        self.archive_bucket.as_deref().ok_or_else(|| {
            self.missing(
                "archive bucket",
                "--archive-bucket NAME",
                "ARCHIVE_BUCKET",
                "ArchiveBucketName",
            )
        })
    }

    /// Returns the queue URL of a destination, or an error naming how to supply it.
    pub fn queue(&self, destination: &str) -> Result<&str> {
        self.queues.get(destination).map(String::as_str).ok_or_else(|| {
            anyhow::anyhow!(
                "the queue of destination {destination} is not known: pass --queue {destination}=URL{}",
                self.stack
                    .as_ref()
                    .map(|stack| format!(" (stack {stack} has no output for it)"))
                    .unwrap_or_else(|| " or --stack NAME".into())
            )
        })
    }
}

/// Reads every output and parameter value of a CloudFormation stack.
pub async fn stack_outputs(
    sdk_config: &SdkConfig,
    stack: &str,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
    let mut builder = aws_sdk_cloudformation::config::Builder::from(sdk_config);
    if loopback_only() {
        builder = builder.interceptor(LoopbackGuard);
    }
    let client = aws_sdk_cloudformation::Client::from_conf(builder.build());
    let response = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{}", sdk_error_text(&error)))
        .with_context(|| {
            format!("could not read stack {stack} through CloudFormation; check --stack, --region and --profile")
        })?;
    let Some(found) = response.stacks().first() else {
        bail!("stack {stack} was not found; check --stack and --region");
    };
    let outputs = found
        .outputs()
        .iter()
        .filter_map(|output| Some((output.output_key()?.to_owned(), output.output_value()?.to_owned())))
        .collect();
    let parameters = found
        .parameters()
        .iter()
        .filter_map(|parameter| {
            Some((
                parameter.parameter_key()?.to_owned(),
                parameter.parameter_value()?.to_owned(),
            ))
        })
        .collect();
    Ok((outputs, parameters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse() {
        assert_eq!(
            parse_pair("accounting=http://127.0.0.1:4566/q"),
            Ok(("accounting".into(), "http://127.0.0.1:4566/q".into()))
        );
        assert!(parse_pair("accounting").is_err());
        assert!(parse_pair("=x").is_err());
    }
}
