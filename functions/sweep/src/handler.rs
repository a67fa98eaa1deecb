//! One scheduled sweep: repair what can be repaired, report the rest.
//!
//! An item that is still stuck after the sweep (an export whose routing
//! failed again, a routed export not delivered within the grace period, an
//! archived body that cannot be read) raises one operational alert on the
//! alerts queue. A marker item in the document table
//! (`sweepalert#<dedupe key>`, `alert`) records that the alert was sent, so
//! the hourly runs do not repeat it; the alerts dispatcher also sends each
//! dedupe key once.

use std::sync::Arc;

use bridge_shared::alerts::{OperationalAlert, kind};
use bridge_shared::dispatch::store::VersionedStore;
use bridge_shared::intake::Intake;
use bridge_shared::ports::{DocumentStore, InfraError, MessageQueue, RawArchive};
use bridge_shared::sweep::{ArchiveListing, SweepOptions, SweepReport, TableScan, sweep};
use bridge_shared::telemetry::{Metric, emit_metrics};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Alert kind of an archived export that the sweep could not route.
pub const EXPORT_UNROUTED: &str = "export_unrouted";

/// Alert kind of an archived webhook body that cannot be read.
pub const ARCHIVED_UNREADABLE: &str = "archived_unreadable";

/// Sort key of alert markers.
const MARKER_SK: &str = "alert";

/// Markers expire after 30 days; an item still stuck then is alerted again.
const MARKER_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// The destination name of the alerts queue.
const ALERTS: &str = "alerts";

/// The result of one run: the report and the alerts it raised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub report: SweepReport,
    /// Alerts sent in this run.
    pub alerts_sent: usize,
    /// Stuck items alerted by an earlier run.
    pub alerts_suppressed: usize,
    /// Alerts that could not be sent; the next run tries again.
    pub alert_failures: usize,
}

#[derive(Serialize)]
struct Marker<'a> {
    pk: String,
    sk: &'static str,
    kind: &'a str,
    sent_at: String,
    version: u64,
    expires_at: i64,
}

/// The sweep function's state.
pub struct App<A, S, Q> {
    pub intake: Intake<A, S, Q>,
    pub listing: Arc<dyn ArchiveListing>,
    pub table: Arc<dyn TableScan>,
    /// The document table, for alert markers.
    pub markers: Arc<dyn VersionedStore>,
    /// Sends to the `alerts` destination.
    pub alerts: Arc<dyn MessageQueue>,
    pub options: SweepOptions,
}

impl<A: RawArchive, S: DocumentStore, Q: MessageQueue> App<A, S, Q> {
    /// Runs one sweep with the configured options.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<RunSummary, InfraError> {
        let report = sweep(
            &self.intake,
            self.listing.as_ref(),
            self.table.as_ref(),
            &self.options,
            now,
        )
        .await?;
        let mut summary = RunSummary {
            report,
            ..RunSummary::default()
        };
        for alert in stuck_alerts(&summary.report, &self.options) {
            self.raise(alert, now, &mut summary).await;
        }

        let report = &summary.report;
        tracing::info!(
            since = %report.since,
            archived_scanned = report.archived_scanned,
            unrouted = report.unrouted.len(),
            still_unrouted = report.still_unrouted(),
            unreadable = report.unreadable.len(),
            pending_uploads = report.pending_uploads.len(),
            undelivered = report.undelivered.len(),
            truncated = report.truncated,
            fix = self.options.fix,
            alerts_sent = summary.alerts_sent,
            alerts_suppressed = summary.alerts_suppressed,
            alert_failures = summary.alert_failures,
            "sweep summary"
        );
        emit(&summary);
        Ok(summary)
    }

    async fn raise(&self, alert: OperationalAlert, now: DateTime<Utc>, summary: &mut RunSummary) {
        let pk = format!("sweepalert#{}", alert.dedupe_key);
        match self.markers.load(&pk, MARKER_SK).await {
            Ok(Some(_)) => {
                summary.alerts_suppressed += 1;
                return;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(dedupe_key = %alert.dedupe_key, error = %error, "could not read the alert marker; sending the alert");
            }
        }

        let body = match serde_json::to_string(&alert) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(dedupe_key = %alert.dedupe_key, error = %error, "could not serialise an alert");
                summary.alert_failures += 1;
                return;
            }
        };
        let attributes = [("kind", alert.kind.clone()), ("dedupe_key", alert.dedupe_key.clone())];
        if let Err(error) = self.alerts.send(ALERTS, &body, &attributes).await {
            tracing::error!(dedupe_key = %alert.dedupe_key, error = %error, "could not send a sweep alert; the next run tries again");
            summary.alert_failures += 1;
            return;
        }
        summary.alerts_sent += 1;

        let marker = Marker {
            pk,
            sk: MARKER_SK,
            kind: &alert.kind,
            sent_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            version: 1,
            expires_at: now.timestamp() + MARKER_TTL_SECONDS,
        };
        let stored = match serde_json::to_value(&marker) {
            Ok(value) => self.markers.store(value, None).await,
            Err(error) => Err(InfraError::new("DynamoDB", "PutItem", error.to_string())),
        };
        if let Err(error) = stored {
            // The alerts dispatcher still sends each dedupe key once.
            tracing::warn!(dedupe_key = %alert.dedupe_key, error = %error, "could not store the alert marker");
        }
    }
}

/// Builds one alert per item that is still stuck after the sweep.
pub fn stuck_alerts(report: &SweepReport, options: &SweepOptions) -> Vec<OperationalAlert> {
    let mut alerts = Vec::new();
    for payload in &report.unrouted {
        let routed = payload
            .fix_result
            .as_deref()
            .is_some_and(|result| result.starts_with("accepted") || result == "duplicate");
        if routed {
            continue;
        }
        let mut alert = OperationalAlert::new(
            EXPORT_UNROUTED,
            "error",
            format!("sweep:unrouted:{}", payload.archive_key),
        )
        .param("archive_key", payload.archive_key.clone())
        .param("state", payload.state.clone())
        .param(
            "error",
            payload
                .fix_result
                .clone()
                .unwrap_or_else(|| "not routed, and this sweep does not repair".into()),
        );
        alert.document_id = Some(payload.document_id);
        alerts.push(alert);
    }

    let grace = options.delivery_grace.num_minutes();
    for export in &report.undelivered {
        let mut error = format!(
            "not delivered {grace} minutes after routing (routed at {}, dispatch status: {})",
            export.routed_at, export.dispatch_status
        );
        if let Some(last) = &export.last_error {
            error.push_str(&format!("; last error: {last}"));
        }
        let mut alert = OperationalAlert::new(
            kind::DISPATCH_FAILED,
            "warning",
            format!("sweep:undelivered:{}", export.idempotency_key),
        )
        .param("destination", export.destination.clone())
        .param("document_id", export.document_id.to_string())
        .param("error_class", "undelivered")
        .param("error", error);
        alert.document_id = Some(export.document_id);
        alerts.push(alert);
    }

    for body in &report.unreadable {
        alerts.push(
            OperationalAlert::new(
                ARCHIVED_UNREADABLE,
                "warning",
                format!("sweep:unreadable:{}", body.archive_key),
            )
            .param("archive_key", body.archive_key.clone())
            .param("error", body.error.clone()),
        );
    }
    alerts
}

fn emit(summary: &RunSummary) {
    let report = &summary.report;
    let count = |name, value: usize| Metric {
        name,
        value: value as f64,
        unit: "Count",
    };
    emit_metrics(
        &[("Function", "sweep")],
        &[
            count("SweepArchivedScanned", report.archived_scanned),
            count("SweepUnrouted", report.unrouted.len()),
            count("SweepStillUnrouted", report.still_unrouted()),
            count("SweepUnreadable", report.unreadable.len()),
            count("SweepPendingUploads", report.pending_uploads.len()),
            count("SweepUndelivered", report.undelivered.len()),
            count("SweepAlertsSent", summary.alerts_sent),
        ],
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::Ordering;

    use bridge_shared::fakes::{FakeArchive, FakeQueues, FakeStore};
    use bridge_shared::intake::IntakeConfig;
    use bridge_shared::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
    use chrono::Duration;

    use super::*;

    const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");

    fn app() -> App<FakeArchive, FakeStore, FakeQueues> {
        let destinations: BTreeSet<String> = DEFAULT_DESTINATIONS.iter().map(|name| name.to_string()).collect();
        let archive = Arc::new(FakeArchive::default());
        let store = Arc::new(FakeStore::default());
        let queues = Arc::new(FakeQueues::default());
        App {
            intake: Intake {
                archive: archive.clone(),
                store: store.clone(),
                queues: queues.clone(),
                rules: Arc::new(RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations).unwrap()),
                config: IntakeConfig::default(),
            },
            listing: archive,
            table: store.clone(),
            markers: store,
            alerts: queues,
            options: SweepOptions {
                since: Duration::hours(48),
                fix: true,
                delivery_grace: Duration::minutes(30),
            },
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-04T08:00:00Z".parse().unwrap()
    }

    fn alert_bodies(app: &App<FakeArchive, FakeStore, FakeQueues>) -> Vec<OperationalAlert> {
        app.intake
            .queues
            .bodies(ALERTS)
            .iter()
            .filter_map(|body| serde_json::from_str::<OperationalAlert>(body).ok())
            .collect()
    }

    #[tokio::test]
    async fn undelivered_export_is_alerted_once() {
        let app = app();
        app.intake.receive(DOCUMENTED.as_bytes(), now()).await.unwrap();

        let first = app.run(now() + Duration::hours(1)).await.unwrap();
        let second = app.run(now() + Duration::hours(2)).await.unwrap();

        assert!(!first.report.undelivered.is_empty());
        assert_eq!(first.alerts_sent, first.report.undelivered.len());
        assert_eq!(second.alerts_sent, 0, "the second run repeats no alert");
        assert_eq!(second.alerts_suppressed, first.alerts_sent);
        let alerts = alert_bodies(&app);
        assert_eq!(alerts.len(), first.alerts_sent);
        assert!(alerts.iter().all(|alert| alert.kind == kind::DISPATCH_FAILED));
        assert!(alerts.iter().any(|alert| alert.params["destination"] == "accounting"));
        assert!(
            alerts[0].params["error"].contains("not delivered 30 minutes after routing"),
            "{:?}",
            alerts[0]
        );
    }

    #[tokio::test]
    async fn export_routed_by_the_sweep_raises_no_alert() {
        let app = app();
        app.intake.queues.fail.store(true, Ordering::SeqCst);
        assert!(app.intake.receive(DOCUMENTED.as_bytes(), now()).await.is_err());
        app.intake.queues.fail.store(false, Ordering::SeqCst);

        let summary = app.run(now() + Duration::minutes(5)).await.unwrap();

        assert_eq!(summary.report.unrouted.len(), 1);
        assert_eq!(summary.report.still_unrouted(), 0);
        assert_eq!(summary.alerts_sent, 0);
        assert!(
            !app.intake.queues.bodies("accounting").is_empty(),
            "the sweep routed it"
        );
    }

    #[tokio::test]
    async fn unreadable_archive_body_is_alerted_once() {
        let app = app();
        app.intake.receive(b"{", now()).await.unwrap();

        let first = app.run(now()).await.unwrap();
        let second = app.run(now() + Duration::hours(1)).await.unwrap();

        assert_eq!(first.alerts_sent, 1);
        assert_eq!(second.alerts_sent, 0);
        let alerts = alert_bodies(&app);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, ARCHIVED_UNREADABLE);
    }

    #[tokio::test]
    async fn failed_alert_is_tried_again_next_run() {
        let app = app();
        app.intake.receive(b"{", now()).await.unwrap();
        app.intake.queues.fail.store(true, Ordering::SeqCst);

        let first = app.run(now()).await.unwrap();
        app.intake.queues.fail.store(false, Ordering::SeqCst);
        let second = app.run(now() + Duration::hours(1)).await.unwrap();

        assert_eq!(first.alert_failures, 1);
        assert_eq!(second.alerts_sent, 1);
    }
}
