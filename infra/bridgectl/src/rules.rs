//! `bridgectl rules check <payload.json> [--rules FILE]`: which rules fire
//! on a payload and which destinations would receive messages. It works
//! offline and sends nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bridge_shared::payload::{WebhookEvent, parse_webhook};
use bridge_shared::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
use clap::{Args, Subcommand};

use crate::output::{Format, print_json, table};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Evaluates the routing rules on a document.exported payload and prints the outcome of
    /// every rule and the destinations that would receive messages. Sends nothing.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A RecordEngine document.exported payload (JSON), as the webhook receives it.
    pub payload: PathBuf,
    /// Rule set (YAML) to evaluate [default: the bundled infra/routing-rules.yaml].
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Destination names the rules may route to, comma-separated; a route to another name is
    /// an error, as it is when the webhook loads the rules.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "accounting,china-accounting,crm,alerts"
    )]
    pub destinations: Vec<String>,
}

/// Runs one `rules` subcommand; returns the exit code.
pub async fn run(command: RulesCommand, format: Format) -> Result<i32> {
    match command {
        RulesCommand::Check(args) => check(args, format),
    }
}

fn check(args: CheckArgs, format: Format) -> Result<i32> {
    let destinations: BTreeSet<String> = if args.destinations.is_empty() {
        DEFAULT_DESTINATIONS.iter().map(|name| name.to_string()).collect()
    } else {
        args.destinations.iter().map(|name| name.trim().to_owned()).collect()
    };
    let rules = match &args.rules {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the rule set {}", path.display()))?;
            RuleSet::from_yaml(&text, &path.display().to_string(), &destinations)?
        }
        None => RuleSet::from_yaml(BUNDLED_RULES, "bundled infra/routing-rules.yaml", &destinations)?,
    };

    let body =
        std::fs::read(&args.payload).with_context(|| format!("cannot read the payload {}", args.payload.display()))?;
    let document = match parse_webhook(&body)
        .with_context(|| format!("{} is not a readable webhook payload", args.payload.display()))?
    {
        WebhookEvent::Export(document) => document,
        WebhookEvent::Other { event } => bail!(
            "{} is not a document.exported payload (event {}); the webhook ignores it and routes nothing",
            args.payload.display(),
            event.as_deref().unwrap_or("missing")
        ),
    };

    let evaluation = rules.evaluate(&document);
    if format == Format::Json {
        print_json(&serde_json::json!({
            "document_id": document.id,
            "ruleset_version": rules.version,
            "decision": evaluation.decision,
            "rules": evaluation.rules,
        }));
        return Ok(0);
    }

    println!(
        "Document #{} against rule set {} ({} rules):",
        document.id,
        rules.version,
        rules.rules.len()
    );
    let rows = evaluation
        .rules
        .iter()
        .map(|rule| {
            let conditions = if rule.conditions.is_empty() {
                "(always)".to_owned()
            } else {
                rule.conditions
                    .iter()
                    .map(|condition| {
                        format!(
                            "{} {}: found {}",
                            if condition.holds { "✓" } else { "✗" },
                            condition.condition,
                            condition.actual.as_deref().unwrap_or("nothing")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            vec![rule.name.clone(), rule.result.to_owned(), conditions]
        })
        .collect();
    println!("{}", table(&["RULE", "RESULT", "CONDITIONS"], rows));

    let decision = &evaluation.decision;
    if decision.routes.is_empty() {
        println!("\nNo destination would receive a message.");
    } else {
        println!("\nRoutes (nothing was sent):");
        let rows = decision
            .routes
            .iter()
            .map(|route| {
                vec![
                    route.destination.clone(),
                    format!("{:?}", route.approval).to_lowercase(),
                    route.rule.clone(),
                ]
            })
            .collect();
        println!("{}", table(&["DESTINATION", "APPROVAL", "CHOSEN BY RULE"], rows));
    }
    if !decision.annotations.is_empty() {
        println!("Annotations: {}", decision.annotations.join(", "));
    }
    Ok(0)
}
