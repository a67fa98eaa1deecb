//! The reconciliation sweep: finds what fell between the cracks.
//!
//! RecordEngine documents no webhook retries, so a webhook answered 503 after
//! its body was archived may never be sent again. The sweep reads the archive
//! and the document table and reports:
//!
//! - archived export payloads that were never routed (no export record, an
//!   `unrouted` one, or a `routing` claim whose lease ran out); with `fix` it
//!   routes them through [`Intake::route_archived`], deduplicated as usual;
//! - archived bodies that cannot be parsed (kept for an operator to fix);
//! - documents uploaded but never exported, and uploads left `ambiguous`,
//!   `failed` or stuck in `uploading`;
//! - exports routed but not yet delivered to every destination.
//!
//! It runs on a schedule (the sweep function) and on demand (`bridgectl sweep`).

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::intake::{ARCHIVE_PREFIX, Intake, Outcome};
use crate::message::{export_fingerprint, idempotency_key};
use crate::payload::{WebhookEvent, parse_webhook};
use crate::ports::{DocumentStore, InfraError, MessageQueue, RawArchive};
use crate::records::{DocumentRecord, ExportRecord, UploadRecord, export_status};

/// Most archive objects one sweep reads; the rest wait for the next run.
pub const MAX_ARCHIVED_PER_SWEEP: usize = 10_000;

/// Listing of archived bodies.
#[async_trait]
pub trait ArchiveListing: Send + Sync {
    /// Keys under `prefix`, in key order, at most `limit`.
    async fn list_keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, InfraError>;
}

/// Reads items of the document table by key prefix.
#[async_trait]
pub trait TableScan: Send + Sync {
    /// Items whose `pk` starts with `pk_prefix` and `sk` with `sk_prefix`, as JSON.
    async fn scan_prefix(&self, pk_prefix: &str, sk_prefix: &str) -> Result<Vec<serde_json::Value>, InfraError>;

    /// One item by key, as JSON.
    async fn get_json(&self, pk: &str, sk: &str) -> Result<Option<serde_json::Value>, InfraError>;
}

/// What one sweep looks at and whether it repairs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Look back this far (archive days, upload and export times).
    pub since: Duration,
    /// Route unrouted payloads.
    pub fix: bool,
    /// A routed export counts as undelivered once it is this old.
    pub delivery_grace: Duration,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            since: Duration::days(7),
            fix: false,
            delivery_grace: Duration::minutes(15),
        }
    }
}

/// An archived export that no delivery routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnroutedPayload {
    pub archive_key: String,
    pub document_id: i64,
    pub fingerprint: String,
    /// `missing` (no export record), `unrouted`, or `routing` with an expired claim.
    pub state: String,
    /// With `fix`: `accepted` with its routes, `duplicate`, or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_result: Option<String>,
}

/// An archived body that is not a readable payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadablePayload {
    pub archive_key: String,
    pub error: String,
}

/// An upload that did not reach the export step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingUpload {
    pub correlation_key: String,
    /// `uploaded` (waiting for an export), `ambiguous`, `failed` or `uploading`.
    pub status: String,
    pub document_id: Option<i64>,
    pub s3_key: Option<String>,
    pub updated_at: String,
    pub last_error: Option<String>,
}

/// A routed export whose message has not been delivered at one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndeliveredExport {
    pub document_id: i64,
    pub destination: String,
    pub idempotency_key: String,
    /// The dispatch record's status, or `no dispatch record`.
    pub dispatch_status: String,
    pub routed_at: String,
    pub last_error: Option<String>,
}

/// Everything one sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub since: String,
    pub archived_scanned: usize,
    pub unrouted: Vec<UnroutedPayload>,
    pub unreadable: Vec<UnreadablePayload>,
    pub pending_uploads: Vec<PendingUpload>,
    pub undelivered: Vec<UndeliveredExport>,
    /// True when the archive held more than [`MAX_ARCHIVED_PER_SWEEP`] objects in the window.
    pub truncated: bool,
}

impl SweepReport {
    /// Unrouted payloads that are still unrouted after this sweep.
    pub fn still_unrouted(&self) -> usize {
        self.unrouted
            .iter()
            .filter(|payload| {
                !payload
                    .fix_result
                    .as_deref()
                    .is_some_and(|result| result.starts_with("accepted") || result == "duplicate")
            })
            .count()
    }
}

/// Runs one sweep.
pub async fn sweep<A, S, Q>(
    intake: &Intake<A, S, Q>,
    archive: &dyn ArchiveListing,
    table: &dyn TableScan,
    options: &SweepOptions,
    now: DateTime<Utc>,
) -> Result<SweepReport, InfraError>
where
    A: RawArchive,
    S: DocumentStore,
    Q: MessageQueue,
{
    let since = now - options.since;
    let mut report = SweepReport {
        since: since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ..SweepReport::default()
    };

    sweep_archive(intake, archive, options, since, now, &mut report).await?;
    sweep_uploads(intake, table, since, &mut report).await?;
    sweep_deliveries(table, options, since, now, &mut report).await?;

    // No summary is logged here: the sweep function logs one `sweep summary`
    // line with the alert counts as well, and `bridgectl sweep` prints the report.
    Ok(report)
}

async fn sweep_archive<A, S, Q>(
    intake: &Intake<A, S, Q>,
    archive: &dyn ArchiveListing,
    options: &SweepOptions,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), InfraError>
where
    A: RawArchive,
    S: DocumentStore,
    Q: MessageQueue,
{
    // Archive keys start with the day they arrived, so list day by day.
    let mut keys = Vec::new();
    let mut day = since.date_naive();
    let last_day = now.date_naive();
    while day <= last_day && keys.len() < MAX_ARCHIVED_PER_SWEEP {
        let prefix = format!("{ARCHIVE_PREFIX}{}/", day.format("%Y/%m/%d"));
        let remaining = MAX_ARCHIVED_PER_SWEEP - keys.len();
        let listed = archive.list_keys(&prefix, remaining + 1).await?;
        if listed.len() > remaining {
            report.truncated = true;
        }
        keys.extend(listed.into_iter().take(remaining));
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    report.archived_scanned = keys.len();

    for key in keys {
        let Some(body) = intake.archive.get(&key).await? else {
            continue;
        };
        let document = match parse_webhook(&body) {
            Ok(WebhookEvent::Export(document)) => document,
            Ok(WebhookEvent::Other { .. }) => continue,
            Err(error) => {
                report.unreadable.push(UnreadablePayload {
                    archive_key: key,
                    error: error.to_string(),
                });
                continue;
            }
        };
        let fingerprint = export_fingerprint(&document.canonical_content());
        let record = intake.store.get_export(document.id, &fingerprint).await?;
        let state = match &record {
            None => "missing",
            Some(record) if record.status == export_status::UNROUTED => "unrouted",
            Some(record) if record.status == export_status::ROUTING && record.lease_until < now.timestamp() => {
                "routing"
            }
            Some(_) => continue,
        };

        let mut unrouted = UnroutedPayload {
            archive_key: key.clone(),
            document_id: document.id,
            fingerprint,
            state: state.to_owned(),
            fix_result: None,
        };
        if options.fix {
            let result = match intake.route_archived(&body, &key, now).await {
                Ok(Outcome::Accepted { routes, .. }) => format!("accepted: {}", routes.join(", ")),
                Ok(Outcome::Duplicate { .. }) => "duplicate".to_owned(),
                Ok(other) => format!("{other:?}"),
                Err(error) => format!("failed: {error}"),
            };
            tracing::info!(document_id = document.id, archive_key = %key, result = %result, "sweep routed an archived export");
            unrouted.fix_result = Some(result);
        }
        report.unrouted.push(unrouted);
    }
    Ok(())
}

async fn sweep_uploads<A, S, Q>(
    intake: &Intake<A, S, Q>,
    table: &dyn TableScan,
    since: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), InfraError>
where
    A: RawArchive,
    S: DocumentStore,
    Q: MessageQueue,
{
    let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for item in table.scan_prefix("ref#", "document").await? {
        let Ok(upload) = serde_json::from_value::<UploadRecord>(item) else {
            continue;
        };
        if upload.updated_at < since_text {
            continue;
        }

        let pending = match upload.status.as_str() {
            "uploaded" => match upload.document_id {
                Some(document_id) => {
                    let document: Option<DocumentRecord> = intake.store.get_document(document_id).await?;
                    document.is_none_or(|record| record.last_export_at.is_none())
                }
                None => true,
            },
            _ => true,
        };
        if pending {
            report.pending_uploads.push(PendingUpload {
                correlation_key: upload.origin.correlation_key.clone(),
                status: upload.status.clone(),
                document_id: upload.document_id,
                s3_key: upload.origin.key.clone(),
                updated_at: upload.updated_at.clone(),
                last_error: upload.last_error.clone(),
            });
        }
    }
    Ok(())
}

async fn sweep_deliveries(
    table: &dyn TableScan,
    options: &SweepOptions,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), InfraError> {
    let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let grace_text = (now - options.delivery_grace).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let done_states: BTreeSet<&str> = ["done"].into();

    for item in table.scan_prefix("doc#", "export#").await? {
        let Ok(export) = serde_json::from_value::<ExportRecord>(item) else {
            continue;
        };
        if export.status != export_status::ROUTED || export.updated_at < since_text || export.updated_at > grace_text {
            continue;
        }
        for destination in &export.routes {
            let key = idempotency_key(export.document_id, &export.fingerprint, destination);
            let dispatch = table.get_json(&format!("dispatch#{key}"), "dispatch").await?;
            let status = dispatch
                .as_ref()
                .and_then(|record| record.get("status"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no dispatch record")
                .to_owned();
            if done_states.contains(status.as_str()) {
                continue;
            }
            let last_error = dispatch
                .as_ref()
                .and_then(|record| record.get("last_error"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            report.undelivered.push(UndeliveredExport {
                document_id: export.document_id,
                destination: destination.clone(),
                idempotency_key: key,
                dispatch_status: status,
                routed_at: export.updated_at.clone(),
                last_error,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::fakes::{FakeArchive, FakeQueues, FakeStore};
    use crate::intake::IntakeConfig;
    use crate::records::{DOCUMENT_SK, Origin, reference_pk};
    use crate::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};

    const DOCUMENTED: &str = include_str!("../../tests/fixtures/recordengine/document-exported.json");

    fn intake() -> Intake<FakeArchive, FakeStore, FakeQueues> {
        let destinations: BTreeSet<String> = DEFAULT_DESTINATIONS.iter().map(|name| name.to_string()).collect();
        Intake {
            archive: Arc::new(FakeArchive::default()),
            store: Arc::new(FakeStore::default()),
            queues: Arc::new(FakeQueues::default()),
            rules: Arc::new(RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations).unwrap()),
            config: IntakeConfig::default(),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-04T08:00:00Z".parse().unwrap()
    }

    async fn run(intake: &Intake<FakeArchive, FakeStore, FakeQueues>, fix: bool, at: DateTime<Utc>) -> SweepReport {
        let options = SweepOptions {
            fix,
            ..SweepOptions::default()
        };
        sweep(intake, intake.archive.as_ref(), intake.store.as_ref(), &options, at)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn archived_but_unrouted_export_is_routed_once() {
        let intake = intake();
        intake.queues.fail.store(true, Ordering::SeqCst);
        assert!(intake.receive(DOCUMENTED.as_bytes(), now()).await.is_err());
        intake.queues.fail.store(false, Ordering::SeqCst);

        let report = run(&intake, false, now()).await;
        assert_eq!(report.archived_scanned, 1);
        assert_eq!(report.unrouted.len(), 1);
        assert_eq!(report.unrouted[0].state, "unrouted");
        assert_eq!(report.still_unrouted(), 1);
        assert_eq!(intake.queues.count(), 0, "a report-only sweep sends nothing");

        let fixed = run(&intake, true, now()).await;
        assert_eq!(fixed.unrouted.len(), 1);
        assert!(fixed.unrouted[0].fix_result.as_deref().unwrap().starts_with("accepted"));
        assert_eq!(fixed.still_unrouted(), 0);
        let sent = intake.queues.count();
        assert!(sent >= 1);

        let again = run(&intake, true, now()).await;
        assert!(again.unrouted.is_empty());
        assert_eq!(intake.queues.count(), sent, "the second sweep sends nothing");
    }

    #[tokio::test]
    async fn missing_export_record_counts_as_unrouted() {
        let intake = intake();
        let key = crate::intake::archive_key(now(), DOCUMENTED.as_bytes());
        intake
            .archive
            .objects
            .lock()
            .unwrap()
            .insert(key, DOCUMENTED.as_bytes().to_vec());

        let report = run(&intake, true, now()).await;

        assert_eq!(report.unrouted[0].state, "missing");
        assert!(
            report.unrouted[0]
                .fix_result
                .as_deref()
                .unwrap()
                .starts_with("accepted")
        );
    }

    #[tokio::test]
    async fn unreadable_and_ignored_bodies() {
        let intake = intake();
        intake.receive(b"{", now()).await.unwrap();
        intake.receive(br#"{"event": "audit.log"}"#, now()).await.unwrap();

        let report = run(&intake, true, now()).await;

        assert_eq!(report.archived_scanned, 2);
        assert_eq!(report.unreadable.len(), 1);
        assert!(report.unreadable[0].error.contains("not valid JSON"));
        assert!(report.unrouted.is_empty());
    }

    #[tokio::test]
    async fn window_excludes_older_days() {
        let intake = intake();
        intake.queues.fail.store(true, Ordering::SeqCst);
        let old = now() - Duration::days(10);
        assert!(intake.receive(DOCUMENTED.as_bytes(), old).await.is_err());

        let report = run(&intake, false, now()).await;

        assert_eq!(report.archived_scanned, 0);
    }

    #[tokio::test]
    async fn routed_exports_without_delivery_are_reported() {
        let intake = intake();
        intake.receive(DOCUMENTED.as_bytes(), now()).await.unwrap();

        let soon = run(&intake, false, now() + Duration::minutes(1)).await;
        assert!(soon.undelivered.is_empty(), "within the grace period");

        let later = run(&intake, false, now() + Duration::hours(1)).await;
        assert!(!later.undelivered.is_empty());
        assert!(
            later
                .undelivered
                .iter()
                .all(|entry| entry.dispatch_status == "no dispatch record")
        );
        assert!(later.undelivered.iter().any(|entry| entry.destination == "accounting"));
    }

    #[tokio::test]
    async fn uploads_without_export_are_reported() {
        let intake = intake();
        intake.store.put_upload(&UploadRecord {
            pk: reference_pk("s3-1"),
            sk: DOCUMENT_SK.into(),
            origin: Origin {
                correlation_key: "s3-1".into(),
                key: Some("inbox/5/12/a.pdf".into()),
                ..Origin::default()
            },
            status: "ambiguous".into(),
            document_id: None,
            lease_until: None,
            last_error: Some("timed out after sending".into()),
            external_refs_sent: None,
            contact_id: Some(5),
            folder_id: Some(12),
            profile_id: None,
            filename: Some("a.pdf".into()),
            updated_at: "2026-12-04T07:00:00.000Z".into(),
        });

        let report = run(&intake, false, now()).await;

        assert_eq!(report.pending_uploads.len(), 1);
        assert_eq!(report.pending_uploads[0].status, "ambiguous");
        assert_eq!(report.pending_uploads[0].s3_key.as_deref(), Some("inbox/5/12/a.pdf"));
    }
}
