//! `bridgectl doc <recordengine-id | external-ref>`: a document's timeline
//! from the S3 drop to each destination's result, from the document table
//! (document record, exports, timeline) and the dispatch record of every route.

use anyhow::{Context, Result, bail};
use bridge_shared::aws::DynamoDocumentStore;
use bridge_shared::dispatch::aws::DynamoVersionedStore;
use bridge_shared::dispatch::record::DispatchRecord;
use bridge_shared::dispatch::store::get_dispatch;
use bridge_shared::message::idempotency_key;
use bridge_shared::ports::{DocumentStore, DocumentView};
use bridge_shared::records::TimelineEntry;
use clap::Args;
use dlq_alert::failure_store::{DynamoFailureStore, FailureStore};
use serde::Serialize;

use crate::age::cut;
use crate::output::{Format, print_json, table};
use crate::resources::StackArgs;

#[derive(Debug, Args)]
pub struct DocArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// RecordEngine document id (digits), or the correlation key this bundle put in
    /// external_refs.recordengine_bridge.record_id (s3-…, file-…).
    pub document: String,
}

/// The state of one route of one export.
#[derive(Debug, Clone, Serialize)]
pub struct RouteState {
    pub destination: String,
    pub fingerprint: String,
    pub idempotency_key: String,
    pub dispatch: Option<DispatchRecord>,
}

/// Everything `doc` prints.
#[derive(Debug, Serialize)]
struct DocReport<'a> {
    document_id: i64,
    resolved_from: Option<&'a str>,
    document: &'a Option<bridge_shared::records::DocumentRecord>,
    exports: &'a [bridge_shared::records::ExportRecord],
    routes: &'a [RouteState],
    timeline: &'a [TimelineEntry],
    failures: &'a [bridge_shared::failures::FailureRecord],
}

/// Builds the timeline table: time, step, destination and detail.
pub fn timeline_table(timeline: &[TimelineEntry]) -> comfy_table::Table {
    let rows = timeline
        .iter()
        .map(|entry| {
            vec![
                entry.at.clone(),
                entry.kind.clone(),
                entry.destination.clone().unwrap_or_else(|| "-".into()),
                cut(&entry.detail, 90),
            ]
        })
        .collect();
    table(&["TIME", "STEP", "DESTINATION", "DETAIL"], rows)
}

/// Builds one row of a dispatch table: destination, status, attempts, remote object and last error.
pub fn dispatch_rows(record: &DispatchRecord) -> Vec<String> {
    vec![
        record.destination.clone(),
        record.status.clone(),
        record.attempts.to_string(),
        record
            .remote_detail
            .clone()
            .or_else(|| record.remote_id.clone())
            .unwrap_or_else(|| "-".into()),
        record
            .last_error
            .as_deref()
            .map(|error| cut(error, 60))
            .unwrap_or_else(|| "-".into()),
    ]
}

/// Reads the dispatch record of every route of every export.
pub async fn route_states(store: &DynamoVersionedStore, view: &DocumentView) -> Result<Vec<RouteState>> {
    let mut routes = Vec::new();
    for export in &view.exports {
        for destination in &export.routes {
            let key = idempotency_key(export.document_id, &export.fingerprint, destination);
            let dispatch = get_dispatch(store, &key)
                .await
                .with_context(|| format!("could not read the dispatch record of {destination}"))?;
            routes.push(RouteState {
                destination: destination.clone(),
                fingerprint: export.fingerprint.clone(),
                idempotency_key: key,
                dispatch,
            });
        }
    }
    Ok(routes)
}

/// Runs `doc`; returns the exit code.
pub async fn run(args: DocArgs, format: Format) -> Result<i32> {
    let resources = args.stack.resolve().await?;
    let table_name = resources.document_table()?.to_owned();
    let documents = DynamoDocumentStore::new(resources.clients.dynamodb.clone(), &table_name);

    let query = args.document.trim();
    let (document_id, resolved_from) = match query.parse::<i64>() {
        Ok(id) => (id, None),
        Err(_) => {
            let upload = documents
                .get_upload(query)
                .await
                .with_context(|| format!("could not read the document table {table_name}"))?;
            match upload {
                Some(upload) => match upload.document_id {
                    Some(id) => (id, Some(query)),
                    None => bail!(
                        "{query} names an upload in state {} that has no RecordEngine id yet{}",
                        upload.status,
                        upload
                            .last_error
                            .map(|error| format!(" (last error: {error})"))
                            .unwrap_or_default()
                    ),
                },
                None => bail!(
                    "{query} is neither a RecordEngine document id (digits) nor a correlation key in {table_name}"
                ),
            }
        }
    };

    let view = documents
        .document_view(document_id)
        .await
        .with_context(|| format!("could not read document #{document_id} from {table_name}"))?;
    if view.document.is_none() && view.exports.is_empty() && view.timeline.is_empty() {
        bail!("no record of RecordEngine document #{document_id} in {table_name}");
    }
    let versioned = DynamoVersionedStore::new(resources.clients.dynamodb.clone(), &table_name);
    let routes = route_states(&versioned, &view).await?;

    // Failure records are optional: shown when the failure table is known.
    let mut failures = Vec::new();
    if let Some(failure_table) = resources.failure_table.as_deref() {
        let store = DynamoFailureStore::new(resources.clients.dynamodb.clone(), failure_table);
        failures = store
            .list()
            .await
            .with_context(|| format!("could not read the failure table {failure_table}"))?
            .into_iter()
            .map(|failure| failure.record)
            .filter(|record| record.document_id == Some(document_id))
            .collect();
        failures.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    }

    if format == Format::Json {
        print_json(&DocReport {
            document_id,
            resolved_from,
            document: &view.document,
            exports: &view.exports,
            routes: &routes,
            timeline: &view.timeline,
            failures: &failures,
        });
        return Ok(0);
    }

    print_document(document_id, resolved_from, &view);
    println!("\nTimeline:");
    println!("{}", timeline_table(&view.timeline));
    if !routes.is_empty() {
        println!("\nDestinations:");
        let rows = routes
            .iter()
            .map(|route| match &route.dispatch {
                Some(record) => dispatch_rows(record),
                None => vec![
                    route.destination.clone(),
                    "not dispatched yet".into(),
                    "0".into(),
                    "-".into(),
                    "-".into(),
                ],
            })
            .collect();
        println!(
            "{}",
            table(&["DESTINATION", "STATUS", "ATTEMPTS", "RESULT", "LAST ERROR"], rows)
        );
    }
    if !failures.is_empty() {
        println!("\nFailure records:");
        let rows = failures
            .iter()
            .map(|record| {
                vec![
                    record.failure_id.clone(),
                    record.destination.clone(),
                    record.status.clone(),
                    record.error_class.clone(),
                    cut(&record.error, 60),
                ]
            })
            .collect();
        println!(
            "{}",
            table(&["FAILURE ID", "DESTINATION", "STATUS", "ERROR CLASS", "ERROR"], rows)
        );
    }
    Ok(0)
}

fn print_document(document_id: i64, resolved_from: Option<&str>, view: &DocumentView) {
    let mut line = format!("Document #{document_id}");
    if let Some(query) = resolved_from {
        line.push_str(&format!(" (correlation key {query})"));
    }
    if let Some(document) = &view.document {
        if let Some(filename) = &document.filename {
            line.push_str(&format!(": {filename}"));
        }
        line.push_str(&format!(", status {}", document.status));
        if let (Some(contact), Some(folder)) = (document.contact_id, document.folder_id) {
            line.push_str(&format!(", contact {contact}, folder {folder}"));
        }
        if let Some(origin) = &document.origin
            && let Some(channel) = &origin.channel
        {
            let source = match (&origin.bucket, &origin.key) {
                (Some(bucket), Some(key)) => format!("s3://{bucket}/{key}"),
                (None, Some(path)) => path.clone(),
                _ => origin.correlation_key.clone(),
            };
            line.push_str(&format!(", uploaded by {channel} from {source}"));
        }
    }
    println!("{line}");
    for export in &view.exports {
        println!(
            "Export {}…: {} to {} (rules {}; rule set {})",
            &export.fingerprint[..export.fingerprint.len().min(12)],
            export.status,
            if export.routes.is_empty() {
                "no destination".to_owned()
            } else {
                export.routes.join(", ")
            },
            export.rules_fired.clone().unwrap_or_default().join(", "),
            export.ruleset_version.as_deref().unwrap_or("-"),
        );
    }
}
