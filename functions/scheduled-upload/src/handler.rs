//! One scheduled run per EventBridge Scheduler invocation.
//!
//! The schedule's payload is not read: every run covers the whole scheduled
//! prefix. A second run (the schedule firing twice, or a retry of this
//! invocation) uploads nothing twice, because each object's upload record is
//! claimed before it is sent. The second run finds those records and skips
//! the objects.

use std::time::{Duration, Instant};

use bridge_shared::inbound::{
    FailureLog, Handoff, ObjectStore, RunSummary, ScheduleConfig, UploadLedger, Uploader, run_scheduled,
};
use bridge_shared::ports::{DocumentStore, MessageQueue};
use bridge_shared::recordengine::DocumentApi;
use bridge_shared::telemetry::{Metric, emit_metrics};

/// The function's state, shared by the invocations of one execution environment.
pub struct App<O, H, S, R, F, Q> {
    pub uploader: Uploader<S, R, F, Q>,
    pub objects: O,
    pub handoff: H,
    pub schedule: ScheduleConfig,
}

impl<O, H, S, R, F, Q> App<O, H, S, R, F, Q>
where
    O: ObjectStore,
    H: Handoff,
    S: DocumentStore + UploadLedger,
    R: DocumentApi,
    F: FailureLog,
    Q: MessageQueue,
{
    /// Runs one pass, logs one summary line, emits the figures as metrics and returns them.
    pub async fn handle(&self, deadline: Instant) -> RunSummary {
        let started = Instant::now();
        let summary = run_scheduled(&self.uploader, &self.objects, &self.handoff, &self.schedule, deadline).await;
        let elapsed = started.elapsed();

        tracing::info!(
            bucket = %self.schedule.bucket,
            prefix = %self.schedule.prefix,
            listed = summary.listed,
            uploaded = summary.uploaded,
            skipped = summary.skipped,
            failed = summary.failed,
            handed_off = summary.handed_off,
            left_for_next_run = summary.left_for_next_run,
            listing_complete = summary.listing_complete,
            failures = ?summary.failures,
            elapsed_ms = elapsed.as_millis() as u64,
            "scheduled upload run finished"
        );
        emit_metrics(
            &[("Function", "scheduled-upload")],
            &[
                count("ScheduledUploaded", summary.uploaded),
                count("ScheduledSkipped", summary.skipped),
                count("ScheduledFailed", summary.failed),
                count("ScheduledHandedOff", summary.handed_off),
                count("ScheduledLeftForNextRun", summary.left_for_next_run),
                Metric {
                    name: "ScheduledRunDuration",
                    value: elapsed.as_secs_f64() * 1000.0,
                    unit: "Milliseconds",
                },
            ],
        );
        summary
    }
}

fn count(name: &str, value: usize) -> Metric<'_> {
    Metric {
        name,
        value: value as f64,
        unit: "Count",
    }
}

/// Converts the Lambda deadline (epoch milliseconds) to an [`Instant`]; a
/// missing deadline (0) gives 15 minutes, the longest Lambda timeout.
pub fn deadline_instant(deadline_epoch_ms: u64) -> Instant {
    if deadline_epoch_ms == 0 {
        return Instant::now() + Duration::from_secs(900);
    }
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    Instant::now() + Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms))
}
