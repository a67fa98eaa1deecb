//! `bridgectl sweep [--since 7d] [--fix]`: the reconciliation sweep the
//! scheduled sweep function runs, from a workstation, with its report printed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bridge_shared::aws::{DynamoDocumentStore, S3Archive, SqsQueues};
use bridge_shared::intake::{Intake, IntakeConfig};
use bridge_shared::rules::{BUNDLED_RULES, RuleSet};
use bridge_shared::sweep::{SweepOptions, SweepReport, sweep};
use chrono::Duration;
use clap::Args;
use indicatif::ProgressBar;

use crate::age::{cut, parse_duration};
use crate::output::{Format, print_json, table};
use crate::resources::StackArgs;

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// How far back to look in the archive and the records: a number and s, m, h, d or w.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub since: Duration,
    /// Routes the archived exports that were never routed, as the scheduled sweep does.
    /// Without it the sweep only reports.
    #[arg(long)]
    pub fix: bool,
    /// Time after routing from which an export that is not delivered everywhere is reported:
    /// a number and s, m, h, d or w.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub grace: Duration,
    /// Rule set (YAML) that routes with --fix [default: the bundled infra/routing-rules.yaml].
    /// NOTE: a stack with RoutingRulesSource set routes with that rule set; pass the same file here.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

/// Runs `sweep`; returns the exit code: 0, or 2 when something is still unrouted.
pub async fn run(args: SweepArgs, format: Format) -> Result<i32> {
    let resources = args.stack.resolve().await?;
    let bucket = resources.archive_bucket()?.to_owned();
    let table_name = resources.document_table()?.to_owned();
    let destinations: BTreeSet<String> = resources.queues.keys().cloned().collect();
    if args.fix {
        for destination in ["accounting", "china-accounting", "crm", "alerts"] {
            resources.queue(destination)?;
        }
    }
    let rules = match &args.rules {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            RuleSet::from_yaml(&text, &path.display().to_string(), &destinations)?
        }
        None => RuleSet::from_yaml(BUNDLED_RULES, "bundled infra/routing-rules.yaml", &destinations)?,
    };

    let archive = Arc::new(S3Archive::new(resources.clients.s3.clone(), &bucket));
    let store = Arc::new(DynamoDocumentStore::new(
        resources.clients.dynamodb.clone(),
        &table_name,
    ));
    let intake = Intake {
        archive: archive.clone(),
        store: store.clone(),
        queues: Arc::new(SqsQueues::new(resources.clients.sqs.clone(), resources.queues.clone())),
        rules: Arc::new(rules),
        config: IntakeConfig::default(),
    };
    let options = SweepOptions {
        since: args.since,
        fix: args.fix,
        delivery_grace: args.grace,
    };

    let spinner = if format == Format::Json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(format!("sweeping s3://{bucket}/raw/ and {table_name}"));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner
    };
    let report = sweep(&intake, archive.as_ref(), store.as_ref(), &options, chrono::Utc::now())
        .await
        .context("the sweep failed")?;
    spinner.finish_and_clear();

    if format == Format::Json {
        print_json(&report);
    } else {
        print_report(&report, args.fix);
    }
    Ok(if report.still_unrouted() > 0 { 2 } else { 0 })
}

fn print_report(report: &SweepReport, fix: bool) {
    println!(
        "Swept {} archived bodies since {}{}.",
        report.archived_scanned,
        report.since,
        if report.truncated {
            " (stopped at the per-run limit; run again for the rest)"
        } else {
            ""
        }
    );
    if report.unrouted.is_empty() {
        println!("Unrouted exports: none.");
    } else {
        println!("\nUnrouted exports:");
        let rows = report
            .unrouted
            .iter()
            .map(|payload| {
                vec![
                    format!("#{}", payload.document_id),
                    payload.state.clone(),
                    payload
                        .fix_result
                        .clone()
                        .unwrap_or_else(|| "not routed (pass --fix to route)".into()),
                    payload.archive_key.clone(),
                ]
            })
            .collect();
        println!("{}", table(&["DOCUMENT", "STATE", "RESULT", "ARCHIVE KEY"], rows));
    }
    if !report.unreadable.is_empty() {
        println!("\nUnreadable archived bodies (fix them and post them to the webhook again):");
        let rows = report
            .unreadable
            .iter()
            .map(|body| vec![body.archive_key.clone(), cut(&body.error, 70)])
            .collect();
        println!("{}", table(&["ARCHIVE KEY", "ERROR"], rows));
    }
    if !report.undelivered.is_empty() {
        println!("\nRouted but not delivered:");
        let rows = report
            .undelivered
            .iter()
            .map(|export| {
                vec![
                    format!("#{}", export.document_id),
                    export.destination.clone(),
                    export.dispatch_status.clone(),
                    export.routed_at.clone(),
                    export
                        .last_error
                        .as_deref()
                        .map(|error| cut(error, 60))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &["DOCUMENT", "DESTINATION", "DISPATCH", "ROUTED AT", "LAST ERROR"],
                rows
            )
        );
    }
    if !report.pending_uploads.is_empty() {
        println!("\nUploads without an export:");
        let rows = report
            .pending_uploads
            .iter()
            .map(|upload| {
                vec![
                    upload.correlation_key.clone(),
                    upload.status.clone(),
                    upload
                        .document_id
                        .map(|id| format!("#{id}"))
                        .unwrap_or_else(|| "-".into()),
                    upload.s3_key.clone().unwrap_or_else(|| "-".into()),
                    upload
                        .last_error
                        .as_deref()
                        .map(|error| cut(error, 50))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        println!(
            "{}",
            table(&["CORRELATION KEY", "STATUS", "DOCUMENT", "SOURCE", "LAST ERROR"], rows)
        );
    }
    if !fix && !report.unrouted.is_empty() {
        println!("\nRun again with --fix to route the unrouted exports; deduplication keeps each routed once.");
    }
}
