//! The scheduled run: every object waiting under the scheduled prefix,
//! uploaded through [`Uploader::upload_object`] with bounded concurrency.
//!
//! The run starts no upload after `deadline - deadline_margin`. Objects it
//! has not started by then are handed to the inbox queue as upload requests
//! ([`Handoff`]), where the S3 upload function takes them with its retries
//! and dead-letter queue. Keys still unlisted when even the handoff runs out
//! of time wait for the next schedule tick. No path uploads twice: every
//! upload claims its upload record first, so a handed-off object, a second
//! tick and an overlapping run all find the claim or the finished record.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::ports::{FailureLog, Handoff, ObjectStore, UploadLedger};
use super::uploader::{UploadOutcome, Uploader};
use super::{Channel, ObjectRef};
use crate::ports::{DocumentStore, MessageQueue};
use crate::recordengine::DocumentApi;

/// Most failure lines kept in a [`RunSummary`].
const MAX_FAILURE_LINES: usize = 20;

/// Settings of one scheduled run.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub bucket: String,
    /// The scheduled prefix, for example `scheduled/`.
    pub prefix: String,
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// No upload starts later than this before the deadline.
    pub deadline_margin: Duration,
    /// Each upload must end this long before the deadline, leaving time to record it.
    pub upload_margin: Duration,
}

/// The figures of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub listed: usize,
    pub uploaded: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Not started before the margin and queued as upload requests.
    pub handed_off: usize,
    /// Not started and not queued either; the next tick picks them up.
    pub left_for_next_run: usize,
    /// Whether every key under the prefix was listed.
    pub listing_complete: bool,
    /// One line per failed object (the first few), for the log.
    pub failures: Vec<String>,
}

/// Runs one scheduled pass; see the module documentation.
pub async fn run_scheduled<O, H, S, R, F, Q>(
    uploader: &Uploader<S, R, F, Q>,
    objects: &O,
    handoff: &H,
    config: &ScheduleConfig,
    deadline: Instant,
) -> RunSummary
where
    O: ObjectStore,
    H: Handoff,
    S: DocumentStore + UploadLedger,
    R: DocumentApi,
    F: FailureLog,
    Q: MessageQueue,
{
    let stop_starting_at = deadline
        .checked_sub(config.deadline_margin)
        .unwrap_or_else(Instant::now);
    let upload_deadline = deadline.checked_sub(config.upload_margin).unwrap_or(deadline);
    let concurrency = config.concurrency.max(1);

    let mut summary = RunSummary::default();
    let mut not_started: Vec<ObjectRef> = Vec::new();
    let mut page_token = None;
    let mut listing_failed = false;

    // Upload page by page while there is time.
    loop {
        if Instant::now() >= stop_starting_at {
            break;
        }
        let page = match objects.list(&config.bucket, &config.prefix, page_token.take()).await {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(bucket = %config.bucket, prefix = %config.prefix, error = %error,
                    "could not list the scheduled prefix; the rest waits for the next run");
                push_failure(&mut summary, format!("listing failed: {error}"));
                listing_failed = true;
                break;
            }
        };
        let refs = page_refs(&config.bucket, page.objects);
        summary.listed += refs.len();

        let results: Vec<(ObjectRef, Option<UploadOutcome>)> = futures::stream::iter(refs)
            .map(|object| async move {
                if Instant::now() >= stop_starting_at {
                    return (object, None);
                }
                let outcome = uploader.upload_object(objects, &object, Some(upload_deadline)).await;
                (object, Some(outcome))
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (object, outcome) in results {
            match outcome {
                Some(outcome) => count(&mut summary, &object, &outcome),
                None => not_started.push(object),
            }
        }

        match page.next {
            Some(next) => page_token = Some(next),
            None => {
                summary.listing_complete = true;
                break;
            }
        }
    }

    // Out of time: hand the rest to the inbox queue, listing what is left
    // until half the margin remains.
    let stop_handing_off_at = deadline
        .checked_sub(config.deadline_margin / 2)
        .unwrap_or_else(Instant::now);
    if !summary.listing_complete && !listing_failed {
        while Instant::now() < stop_handing_off_at {
            let page = match objects.list(&config.bucket, &config.prefix, page_token.take()).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(error = %error, "could not list the rest of the scheduled prefix");
                    break;
                }
            };
            let refs = page_refs(&config.bucket, page.objects);
            summary.listed += refs.len();
            not_started.extend(refs);
            match page.next {
                Some(next) => page_token = Some(next),
                None => {
                    summary.listing_complete = true;
                    break;
                }
            }
        }
    }
    if !not_started.is_empty() {
        match handoff.hand_off(&not_started).await {
            Ok(queued) => {
                summary.handed_off = queued;
                summary.left_for_next_run = not_started.len() - queued.min(not_started.len());
            }
            Err(error) => {
                tracing::error!(objects = not_started.len(), error = %error,
                    "could not hand the remaining objects to the inbox queue; the next run picks them up");
                summary.left_for_next_run = not_started.len();
            }
        }
    }
    summary
}

fn page_refs(bucket: &str, listed: Vec<super::ports::ListedObject>) -> Vec<ObjectRef> {
    listed
        .into_iter()
        .filter(|object| !object.key.ends_with('/'))
        .map(|object| ObjectRef {
            bucket: bucket.to_owned(),
            key: object.key,
            version_id: None,
            etag: object.etag,
            size: Some(object.size),
            channel: Channel::Schedule,
        })
        .collect()
}

fn count(summary: &mut RunSummary, object: &ObjectRef, outcome: &UploadOutcome) {
    match outcome.category() {
        "uploaded" => summary.uploaded += 1,
        "skipped" => summary.skipped += 1,
        _ => {
            summary.failed += 1;
            let reason = match outcome {
                UploadOutcome::Rejected { reason, .. } | UploadOutcome::LeftForOperator { reason, .. } => {
                    reason.clone()
                }
                UploadOutcome::Failed { error, .. } | UploadOutcome::Retry { error, .. } => error.clone(),
                _ => String::new(),
            };
            push_failure(summary, format!("{}: {reason}", object.key));
        }
    }
}

fn push_failure(summary: &mut RunSummary, line: String) {
    if summary.failures.len() < MAX_FAILURE_LINES {
        summary.failures.push(line);
    }
}
