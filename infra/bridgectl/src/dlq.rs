//! `bridgectl dlq`: list, show and redrive the failure records that the
//! dead-letter function (and the upload path) store in the failure table.
//!
//! A redrive sends each record's original body back to its destination
//! queue. The body keeps its idempotency key, so a message that was in fact
//! delivered before is acknowledged by the dispatcher as a duplicate and
//! nothing is booked twice. Sends are paced per destination, because SQS
//! redrive moves a whole queue at up to 500 messages a second, far faster
//! than QuickBooks (500 a minute) or Xero (60 a minute) accept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::MessageAttributeValue;
use bridge_shared::aws::{DynamoDocumentStore, sdk_error_text};
use bridge_shared::dispatch::aws::DynamoVersionedStore;
use bridge_shared::dispatch::engine::attribute;
use bridge_shared::dispatch::settings::{BUNDLED_DESTINATIONS, DestinationSettings, DestinationsFile};
use bridge_shared::dispatch::store::get_dispatch;
use bridge_shared::failures::{error_class, failure_status};
use bridge_shared::ports::DocumentStore;
use bridge_shared::records::TimelineEntry;
use chrono::{Duration, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use dlq_alert::dead_letter::failure_id_for;
use dlq_alert::failure_store::{DynamoFailureStore, FailureStore, StoredFailure};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::age::{age, cut, parse_duration};
use crate::doc::{dispatch_rows, timeline_table};
use crate::output::{Format, print_json, table};
use crate::resources::{Resources, StackArgs};

/// Attributes the dispatcher and this command set; a redrive sends the message without them.
const ENGINE_ATTRIBUTES: [&str; 6] = [
    attribute::ERROR,
    attribute::ERROR_CLASS,
    attribute::DEAD_LETTERED_AT,
    attribute::SOURCE_MESSAGE_ID,
    attribute::RECORDED_BY,
    attribute::DEFERRALS,
];

/// The attribute naming the failure record a redriven message came from.
pub const REDRIVEN_FROM: &str = "redriven_from";

/// Highest `--rate`, in messages per minute: one every 10 ms.
const MAX_RATE: u32 = 6000;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Lists failure records with document, destination, error class, attempts and age.
    List(ListArgs),
    /// Shows one failure record in full, its payload and the document's timeline.
    Show(ShowArgs),
    /// Sends failures back to their destination queue, paced to the destination's rate limit,
    /// and marks their records redriven so that running it again sends nothing.
    Redrive(RedriveArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Lists only failures of this destination: accounting, china-accounting, crm, alerts or upload.
    #[arg(long, value_name = "DESTINATION")]
    pub destination: Option<String>,
    /// Lists only failures recorded within this time before now: a number and s, m, h, d or w.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub since: Duration,
    /// Lists only failures in this state: open, redriven, resolved or all.
    #[arg(long, value_name = "STATE", default_value = "open")]
    pub status: String,
    /// Lists only failures of this error class: retryable, permanent, throttled, ambiguous or unreadable.
    #[arg(long, value_name = "CLASS")]
    pub error_class: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The failure id, as `bridgectl dlq list` prints it (dlq-… or an upload failure id).
    pub failure_id: String,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Redrives only failures of this destination: accounting, china-accounting, crm, alerts or upload.
    #[arg(long, value_name = "DESTINATION")]
    pub destination: Option<String>,
    /// Redrives only failures of this error class. Unreadable failures are redriven only when
    /// this names them, since their body failed to parse once already.
    #[arg(long, value_name = "CLASS")]
    pub error_class: Option<String>,
    /// Redrives only failures recorded within this time before now: a number and s, m, h, d or w.
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = parse_duration)]
    pub since: Duration,
    /// Redrives only these failure ids (repeatable).
    #[arg(long = "id", value_name = "FAILURE_ID")]
    pub ids: Vec<String>,
    /// Messages sent per minute to each destination queue. Default: half the destination's
    /// published limit (QuickBooks 250, Xero 30, HubSpot 300, WeCom 10, JSON endpoint and uploads 30),
    /// leaving the other half to live traffic.
    #[arg(long, value_name = "PER_MINUTE", value_parser = clap::value_parser!(u32).range(1..=MAX_RATE as i64))]
    pub rate: Option<u32>,
    /// Destination settings file that names each destination's kind, for the default rate
    /// [default: the bundled infra/destinations.yaml].
    #[arg(long, value_name = "FILE")]
    pub destinations: Option<PathBuf>,
    /// Prints what would be sent and changes nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs one `dlq` subcommand; returns the exit code.
pub async fn run(command: DlqCommand, format: Format) -> Result<i32> {
    match command {
        DlqCommand::List(args) => list(args, format).await,
        DlqCommand::Show(args) => show(args, format).await,
        DlqCommand::Redrive(args) => redrive(args, format).await,
    }
}

fn failure_store(resources: &Resources) -> Result<DynamoFailureStore> {
    Ok(DynamoFailureStore::new(
        resources.clients.dynamodb.clone(),
        resources.failure_table()?,
    ))
}

/// Reads the records that match the filters, oldest first.
async fn select(
    store: &DynamoFailureStore,
    destination: Option<&str>,
    error_class: Option<&str>,
    status: Option<&str>,
    since: Duration,
) -> Result<Vec<StoredFailure>> {
    let since_text = (Utc::now() - since).to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut failures: Vec<StoredFailure> = store
        .list()
        .await
        .with_context(|| format!("could not read the failure table {}", store.table()))?
        .into_iter()
        .filter(|failure| destination.is_none_or(|wanted| failure.record.destination == wanted))
        .filter(|failure| error_class.is_none_or(|wanted| failure.record.error_class == wanted))
        .filter(|failure| status.is_none_or(|wanted| failure.record.status == wanted))
        .filter(|failure| failure.record.created_at >= since_text)
        .collect();
    failures.sort_by(|a, b| a.record.created_at.cmp(&b.record.created_at));
    Ok(failures)
}

async fn list(args: ListArgs, format: Format) -> Result<i32> {
    let status = match args.status.as_str() {
        "all" => None,
        failure_status::OPEN | failure_status::REDRIVEN | failure_status::RESOLVED => Some(args.status.as_str()),
        other => bail!("--status {other:?} is invalid: use open, redriven, resolved or all"),
    };
    let resources = args.stack.resolve().await?;
    let store = failure_store(&resources)?;
    let failures = select(
        &store,
        args.destination.as_deref(),
        args.error_class.as_deref(),
        status,
        args.since,
    )
    .await?;

    if format == Format::Json {
        let records: Vec<_> = failures.iter().map(|failure| &failure.record).collect();
        print_json(&records);
        return Ok(0);
    }
    if failures.is_empty() {
        println!(
            "No {} failures in the last {} (table {}).",
            status.unwrap_or("recorded"),
            format_duration(args.since),
            store.table()
        );
        return Ok(0);
    }
    let now = Utc::now();
    let rows = failures
        .iter()
        .map(|failure| {
            let record = &failure.record;
            vec![
                record.failure_id.clone(),
                age(&record.created_at, now),
                record.destination.clone(),
                subject(record),
                record.error_class.clone(),
                record.attempts.to_string(),
                record.status.clone(),
                cut(&record.error, 70),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "FAILURE ID",
                "AGE",
                "DESTINATION",
                "DOCUMENT",
                "ERROR CLASS",
                "ATTEMPTS",
                "STATUS",
                "ERROR"
            ],
            rows
        )
    );
    println!(
        "{} failure(s). Details: bridgectl dlq show <failure id>",
        failures.len()
    );
    Ok(0)
}

/// Returns what a failure is about: `#<document id>`, the S3 key, or `-`.
fn subject(record: &bridge_shared::failures::FailureRecord) -> String {
    match (&record.document_id, &record.s3_key) {
        (Some(id), _) => format!("#{id}"),
        (None, Some(key)) => cut(key, 40),
        (None, None) => "-".into(),
    }
}

fn format_duration(duration: Duration) -> String {
    let hours = duration.num_hours();
    if hours >= 48 && hours % 24 == 0 {
        format!("{} days", hours / 24)
    } else if hours >= 1 {
        format!("{hours} h")
    } else {
        format!("{} min", duration.num_minutes())
    }
}

/// Parses JSON text, or keeps it as a string when it is not JSON.
fn json_or_text(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

async fn show(args: ShowArgs, format: Format) -> Result<i32> {
    let resources = args.stack.resolve().await?;
    let store = failure_store(&resources)?;
    let Some(failure) = store
        .get(&args.failure_id)
        .await
        .with_context(|| format!("could not read the failure table {}", store.table()))?
    else {
        bail!(
            "no failure record {} in table {}; list them with bridgectl dlq list --status all",
            args.failure_id,
            store.table()
        );
    };
    let record = &failure.record;

    // The dispatch record and timeline need the document table; without it they are left out.
    let mut dispatch = None;
    let mut view = None;
    if let Some(table_name) = resources.document_table.as_deref() {
        let versioned = DynamoVersionedStore::new(resources.clients.dynamodb.clone(), table_name);
        if let Some(key) = &record.idempotency_key {
            dispatch = get_dispatch(&versioned, key)
                .await
                .context("could not read the dispatch record")?;
        }
        if let Some(document_id) = record.document_id {
            let documents = DynamoDocumentStore::new(resources.clients.dynamodb.clone(), table_name);
            view = Some(
                documents
                    .document_view(document_id)
                    .await
                    .context("could not read the document's timeline")?,
            );
        }
    }

    if format == Format::Json {
        print_json(&serde_json::json!({
            "failure": record,
            "alert_state": failure.alert_state,
            "payload": record.body.as_deref().map(json_or_text),
            "attributes": record.attributes.as_deref().map(json_or_text),
            "dispatch": dispatch,
            "timeline": view.as_ref().map(|view| &view.timeline),
        }));
        return Ok(0);
    }

    let field = |name: &str, value: Option<String>| vec![name.to_owned(), value.unwrap_or_else(|| "-".into())];
    let rows = vec![
        field("failure id", Some(record.failure_id.clone())),
        field("status", Some(record.status.clone())),
        field("created", Some(record.created_at.clone())),
        field("recorded by", Some(record.recorded_by.clone())),
        field("destination", Some(record.destination.clone())),
        field("error class", Some(record.error_class.clone())),
        field("attempts", Some(record.attempts.to_string())),
        field("document", record.document_id.map(|id| id.to_string())),
        field("idempotency key", record.idempotency_key.clone()),
        field("correlation key", record.correlation_key.clone()),
        field("external refs", record.external_refs.clone()),
        field("source queue", record.source_queue.clone()),
        field(
            "S3 object",
            record
                .s3_key
                .as_ref()
                .map(|key| format!("s3://{}/{key}", record.s3_bucket.as_deref().unwrap_or("?"))),
        ),
        field("redriven at", record.redriven_at.clone()),
        field("alert", failure.alert_state.clone()),
        field("error", Some(record.error.clone())),
    ];
    println!("{}", table(&["FIELD", "VALUE"], rows));

    println!("\nPayload:");
    match record.body.as_deref() {
        Some(body) => match serde_json::from_str::<serde_json::Value>(body) {
            Ok(value) => println!("{}", serde_json::to_string_pretty(&pretty_payload(value))?),
            Err(_) => println!("{body}"),
        },
        None => println!("(no body stored)"),
    }
    if let Some(attributes) = record.attributes.as_deref() {
        println!("\nMessage attributes:");
        println!("{}", serde_json::to_string_pretty(&json_or_text(attributes))?);
    }
    if let Some(dispatch) = &dispatch {
        println!("\nDispatch record:");
        println!(
            "{}",
            table(
                &["DESTINATION", "STATUS", "ATTEMPTS", "REMOTE", "LAST ERROR"],
                vec![dispatch_rows(dispatch)]
            )
        );
    }
    match &view {
        Some(view) if !view.timeline.is_empty() => {
            println!("\nTimeline of document #{}:", record.document_id.unwrap_or_default());
            println!("{}", timeline_table(&view.timeline));
        }
        Some(_) => println!("\nThe document has no timeline entries."),
        None if record.document_id.is_some() => {
            println!("\nTimeline: pass --document-table or --stack to show the document's timeline.")
        }
        None => {}
    }
    Ok(0)
}

/// Opens a routed message's payload for reading: an inline export stays as
/// it is, a nested JSON string becomes JSON.
fn pretty_payload(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(mut object) => {
            if let Some(serde_json::Value::String(inner)) = object.get("Message")
                && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(inner)
            {
                object.insert("Message".into(), parsed);
            }
            serde_json::Value::Object(object)
        }
        other => other,
    }
}

/// The outcome of redriving one failure.
#[derive(Debug, Clone, Serialize)]
pub struct Redriven {
    pub failure_id: String,
    pub destination: String,
    pub document_id: Option<i64>,
    /// `sent`, `would send`, `skipped` or `failed`.
    pub result: String,
    pub detail: String,
    /// The fate of the copy in the dead-letter queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_copy: Option<String>,
}

/// Messages per minute that a redrive sends by default: half the published
/// limit of the destination's kind, so that live traffic keeps the other half.
pub fn default_rate(kind: &str) -> u32 {
    match kind {
        "quickbooks" => 250,
        "xero" => 30,
        "hubspot" => 300,
        "alerts" => 10,
        _ => 30,
    }
}

/// Reads each destination's kind (`quickbooks`, `http_json`, …) from a
/// destination settings file, or from the bundled one when `path` is `None`.
pub fn destination_kinds(path: Option<&PathBuf>) -> Result<BTreeMap<String, &'static str>> {
    let (text, name) = match path {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            BUNDLED_DESTINATIONS.to_owned(),
            "bundled infra/destinations.yaml".to_owned(),
        ),
    };
    let file = DestinationsFile::from_yaml(&text, &name).map_err(anyhow::Error::msg)?;
    Ok(file
        .destinations
        .iter()
        .map(|(name, settings)| {
            let kind = match settings {
                DestinationSettings::Quickbooks(_) => "quickbooks",
                DestinationSettings::Xero(_) => "xero",
                DestinationSettings::HttpJson(_) => "http_json",
                DestinationSettings::Hubspot(_) => "hubspot",
                DestinationSettings::Alerts(_) => "alerts",
            };
            (name.clone(), kind)
        })
        .collect())
}

/// Builds the attributes a redriven message carries: the original ones without
/// those the dispatcher set when it dead-lettered it, and the failure id.
fn redrive_attributes(failure: &StoredFailure) -> Vec<(String, String)> {
    let mut attributes: Vec<(String, String)> = failure
        .record
        .attributes
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|value| value.get("message_attributes").cloned())
        .and_then(|value| value.as_object().cloned())
        .map(|object| {
            object
                .into_iter()
                .filter(|(name, _)| !ENGINE_ATTRIBUTES.contains(&name.as_str()) && name != REDRIVEN_FROM)
                .filter_map(|(name, value)| Some((name, value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    // SQS allows ten attributes per message.
    attributes.truncate(9);
    attributes.push((REDRIVEN_FROM.to_owned(), failure.record.failure_id.clone()));
    attributes
}

/// Returns why a failure cannot be redriven as it is stored, if it cannot.
fn refusal(failure: &StoredFailure, error_class_filter: Option<&str>) -> Option<String> {
    let record = &failure.record;
    if record.body.is_none() {
        return Some("no message body is stored; nothing can be sent".into());
    }
    let truncated = record
        .attributes
        .as_deref()
        .is_some_and(|attributes| attributes.contains("body_truncated_from_bytes"));
    if truncated {
        return Some("the stored body was cut to fit the table; it cannot be replayed".into());
    }
    if record.error_class == error_class::UNREADABLE && error_class_filter != Some(error_class::UNREADABLE) {
        return Some(
            "the body could not be read; fix the cause and pass --error-class unreadable to send it anyway".into(),
        );
    }
    None
}

async fn redrive(args: RedriveArgs, format: Format) -> Result<i32> {
    let resources = args.stack.resolve().await?;
    redrive_with(args, resources, format).await
}

/// Runs `dlq redrive` against resources the caller resolved and returns the exit code.
pub async fn redrive_with(args: RedriveArgs, resources: Resources, format: Format) -> Result<i32> {
    let store = failure_store(&resources)?;
    let kinds = destination_kinds(args.destinations.as_ref())?;
    let mut failures = select(
        &store,
        args.destination.as_deref(),
        args.error_class.as_deref(),
        Some(failure_status::OPEN),
        args.since,
    )
    .await?;
    if !args.ids.is_empty() {
        failures.retain(|failure| args.ids.contains(&failure.record.failure_id));
    }

    let mut by_destination: BTreeMap<String, Vec<StoredFailure>> = BTreeMap::new();
    for failure in failures {
        by_destination
            .entry(failure.record.destination.clone())
            .or_default()
            .push(failure);
    }
    let total: usize = by_destination.values().map(Vec::len).sum();
    let progress = progress_bar(total as u64, args.dry_run || format == Format::Json);
    let documents = resources
        .document_table
        .as_deref()
        .map(|name| DynamoDocumentStore::new(resources.clients.dynamodb.clone(), name));

    let mut results = Vec::new();
    for (destination, failures) in &by_destination {
        let kind = match destination.as_str() {
            "upload" => "upload",
            other => kinds.get(other).copied().unwrap_or("unknown"),
        };
        let rate = args.rate.unwrap_or_else(|| default_rate(kind));
        let queue = resources.queue(destination).map(str::to_owned);
        progress.set_message(format!("{destination} at {rate}/min"));
        let interval = StdDuration::from_secs_f64(60.0 / f64::from(rate));
        let mut next_slot = tokio::time::Instant::now();
        let mut sent_ids = BTreeSet::new();

        for failure in failures {
            let record = &failure.record;
            let mut outcome = Redriven {
                failure_id: record.failure_id.clone(),
                destination: destination.clone(),
                document_id: record.document_id,
                result: String::new(),
                detail: String::new(),
                dead_letter_copy: None,
            };
            match (&queue, refusal(failure, args.error_class.as_deref())) {
                (_, Some(reason)) => {
                    outcome.result = "skipped".into();
                    outcome.detail = reason;
                }
                (Err(error), None) => {
                    outcome.result = "skipped".into();
                    outcome.detail = error.to_string();
                }
                (Ok(queue_url), None) if args.dry_run => {
                    outcome.result = "would send".into();
                    outcome.detail = format!("to {queue_url} at {rate}/min");
                }
                (Ok(queue_url), None) => {
                    tokio::time::sleep_until(next_slot).await;
                    next_slot = tokio::time::Instant::now() + interval;
                    send_one(&resources, &store, documents.as_ref(), failure, queue_url, &mut outcome).await;
                    if outcome.result == "sent" {
                        sent_ids.insert(record.failure_id.clone());
                    }
                }
            }
            progress.inc(1);
            results.push(outcome);
        }

        if !sent_ids.is_empty() {
            let copies = remove_dead_letter_copies(&resources, destination, &sent_ids).await;
            for outcome in results
                .iter_mut()
                .filter(|outcome| sent_ids.contains(&outcome.failure_id))
            {
                outcome.dead_letter_copy = Some(copies.describe(&outcome.failure_id));
            }
        }
    }
    progress.finish_and_clear();

    print_redrive(&results, total, args.dry_run, format);
    let failed = results.iter().any(|outcome| outcome.result == "failed");
    Ok(if failed { 1 } else { 0 })
}

fn progress_bar(total: u64, hidden: bool) -> ProgressBar {
    if hidden || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Claims the record, sends its body, and records the redrive on the
/// document's timeline. A send that fails gives the claim back.
async fn send_one(
    resources: &Resources,
    store: &DynamoFailureStore,
    documents: Option<&DynamoDocumentStore>,
    failure: &StoredFailure,
    queue_url: &str,
    outcome: &mut Redriven,
) {
    let record = &failure.record;
    let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    match store.mark_redriven(&record.failure_id, &at).await {
        Ok(true) => {}
        Ok(false) => {
            outcome.result = "skipped".into();
            outcome.detail = "another redrive took this record first".into();
            return;
        }
        Err(error) => {
            outcome.result = "failed".into();
            outcome.detail = format!("could not mark the record redriven: {error}");
            return;
        }
    }

    let mut request = resources
        .clients
        .sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(record.body.clone().unwrap_or_default());
    for (name, value) in redrive_attributes(failure) {
        match MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
        {
            Ok(attribute) => request = request.message_attributes(name, attribute),
            Err(error) => tracing::warn!(failure_id = %record.failure_id, error = %error, "attribute left out"),
        }
    }
    match request.send().await {
        Ok(response) => {
            outcome.result = "sent".into();
            outcome.detail = format!("message {}", response.message_id().unwrap_or("?"));
        }
        Err(error) => {
            let text = sdk_error_text(&error);
            outcome.result = "failed".into();
            outcome.detail = format!("SQS SendMessage failed: {text}");
            if let Err(reopen_error) = store
                .reopen(
                    &record.failure_id,
                    &at,
                    &format!("{}; redrive failed: {text}", record.error),
                )
                .await
            {
                outcome.detail.push_str(&format!(
                    "; the record stays redriven because reopening it failed too: {reopen_error}"
                ));
            }
            return;
        }
    }

    if let (Some(documents), Some(document_id)) = (documents, record.document_id) {
        let entry = TimelineEntry::new(
            document_id,
            Utc::now(),
            "redriven",
            format!(
                "failure {} sent back to the {} queue",
                record.failure_id, record.destination
            ),
        )
        .with_destination(&record.destination)
        .with_data(&serde_json::json!({"failure_id": record.failure_id}));
        if let Err(error) = documents.append_timeline(&entry).await {
            tracing::warn!(document_id, error = %error, "could not append the redrive to the timeline");
        }
    }
}

/// The findings of a scan of a dead-letter queue.
#[derive(Debug, Default)]
struct DeadLetterCopies {
    queue_known: bool,
    scan_error: Option<String>,
    deleted: BTreeSet<String>,
}

impl DeadLetterCopies {
    fn describe(&self, failure_id: &str) -> String {
        if !self.queue_known {
            "dead-letter queue unknown; pass --dead-letter-queue DESTINATION=URL to delete a copy".into()
        } else if let Some(error) = &self.scan_error {
            format!("not checked: {error}")
        } else if self.deleted.contains(failure_id) {
            "deleted".into()
        } else {
            "not in the dead-letter queue (the dead-letter function consumed it)".into()
        }
    }
}

/// Deletes the copies of redriven failures still waiting in the destination's
/// dead-letter queue. The dead-letter function normally consumes a message
/// as it records it, so a copy remains only when that function failed or
/// its event source is disabled. Other messages are hidden during the scan
/// and released at its end.
async fn remove_dead_letter_copies(
    resources: &Resources,
    destination: &str,
    redriven: &BTreeSet<String>,
) -> DeadLetterCopies {
    let mut copies = DeadLetterCopies::default();
    let Some(queue_url) = resources.dead_letter_queues.get(destination) else {
        return copies;
    };
    copies.queue_known = true;
    let sqs = &resources.clients.sqs;
    let mut others = Vec::new();

    // Bounded: 100 receives of 10 cover a dead-letter queue of 1,000 messages.
    for _ in 0..100 {
        let response = match sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .wait_time_seconds(0)
            .message_attribute_names(attribute::SOURCE_MESSAGE_ID)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                copies.scan_error = Some(sdk_error_text(&error));
                break;
            }
        };
        let messages = response.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let source = message
                .message_attributes()
                .and_then(|attributes| attributes.get(attribute::SOURCE_MESSAGE_ID))
                .and_then(|value| value.string_value());
            let id = failure_id_for(message.message_id().unwrap_or_default(), source);
            let Some(handle) = message.receipt_handle() else {
                continue;
            };
            if redriven.contains(&id) {
                match sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                {
                    Ok(_) => {
                        copies.deleted.insert(id);
                    }
                    Err(error) => {
                        tracing::warn!(failure_id = %id, error = %sdk_error_text(&error), "could not delete the copy")
                    }
                }
            } else {
                others.push(handle.to_owned());
            }
        }
    }
    for handle in others {
        let released = sqs
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(&handle)
            .visibility_timeout(0)
            .send()
            .await;
        if let Err(error) = released {
            tracing::warn!(error = %sdk_error_text(&error), "a scanned message stays hidden for 60 s");
        }
    }
    copies
}

fn print_redrive(results: &[Redriven], total: usize, dry_run: bool, format: Format) {
    if format == Format::Json {
        print_json(results);
        return;
    }
    if results.is_empty() {
        println!("Nothing to redrive: no open failure matches.");
        return;
    }
    let rows = results
        .iter()
        .map(|outcome| {
            vec![
                outcome.failure_id.clone(),
                outcome.destination.clone(),
                outcome
                    .document_id
                    .map(|id| format!("#{id}"))
                    .unwrap_or_else(|| "-".into()),
                outcome.result.clone(),
                cut(&outcome.detail, 60),
                outcome.dead_letter_copy.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "FAILURE ID",
                "DESTINATION",
                "DOCUMENT",
                "RESULT",
                "DETAIL",
                "DEAD-LETTER COPY"
            ],
            rows
        )
    );
    let sent = results.iter().filter(|outcome| outcome.result == "sent").count();
    if dry_run {
        let would = results.iter().filter(|outcome| outcome.result == "would send").count();
        println!("Dry run: {would} of {total} failure(s) would be sent; nothing was changed.");
    } else {
        println!("Sent {sent} of {total} failure(s); their records are marked redriven.");
    }
}

#[cfg(test)]
mod tests {
    use bridge_shared::failures::FailureRecord;

    use super::*;

    fn stored(attributes: Option<&str>, class: &str, body: Option<&str>) -> StoredFailure {
        StoredFailure::new(FailureRecord {
            failure_id: "dlq-1".into(),
            created_at: "2026-12-04T08:00:00.000Z".into(),
            recorded_by: "dlq-alert".into(),
            destination: "accounting".into(),
            error_class: class.into(),
            error: "QuickBooks answered HTTP 500".into(),
            status: failure_status::OPEN.into(),
            attempts: 5,
            document_id: Some(847),
            idempotency_key: None,
            correlation_key: None,
            external_refs: None,
            source_queue: None,
            body: body.map(str::to_owned),
            attributes: attributes.map(str::to_owned),
            s3_bucket: None,
            s3_key: None,
            s3_version_id: None,
            redriven_at: None,
            updated_at: None,
        })
    }

    #[test]
    fn redrive_drops_dead_letter_attributes() {
        let attributes = r#"{"message_attributes": {"idempotency_key": "k", "error": "boom", "error_class": "permanent",
            "recorded_by": "dispatch-accounting", "deferrals": "3", "redriven_from": "dlq-0"}}"#;

        let sent = redrive_attributes(&stored(Some(attributes), error_class::PERMANENT, Some("{}")));

        assert_eq!(
            sent,
            vec![
                ("idempotency_key".to_owned(), "k".to_owned()),
                (REDRIVEN_FROM.to_owned(), "dlq-1".to_owned())
            ]
        );
    }

    #[test]
    fn refusals_name_the_reason() {
        assert!(
            refusal(&stored(None, error_class::RETRYABLE, None), None)
                .unwrap()
                .contains("no message body")
        );
        let cut_body = stored(
            Some(r#"{"body_truncated_from_bytes": 400000}"#),
            error_class::RETRYABLE,
            Some("{"),
        );
        assert!(refusal(&cut_body, None).unwrap().contains("cut"));
        let unreadable = stored(None, error_class::UNREADABLE, Some("x"));
        assert!(refusal(&unreadable, None).unwrap().contains("--error-class unreadable"));
        assert_eq!(refusal(&unreadable, Some(error_class::UNREADABLE)), None);
        assert_eq!(refusal(&stored(None, error_class::RETRYABLE, Some("{}")), None), None);
    }

    #[test]
    fn default_rates_stay_under_published_limits() {
        assert_eq!(default_rate("quickbooks"), 250);
        assert_eq!(default_rate("xero"), 30);
        assert!(default_rate("alerts") < 20);
        let kinds = destination_kinds(None).unwrap();
        assert_eq!(kinds["accounting"], "quickbooks");
        assert_eq!(kinds["alerts"], "alerts");
    }
}
