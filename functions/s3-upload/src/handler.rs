//! Inbox-queue batches: S3 `ObjectCreated` notifications (and upload requests
//! handed over by the scheduled run) in, partial batch failures out.
//!
//! S3 notifies the inbox queue rather than this function directly, because
//! the queue gives three things a direct invocation does not. The function
//! sets each failed item's retry delay (its visibility timeout follows
//! RecordEngine's `Retry-After` or a backoff). Messages that keep failing move
//! to a dead-letter queue after `maxReceiveCount` deliveries. Results are per
//! item, so one bad object does not send a whole batch back, which needs
//! `ReportBatchItemFailures` on the event source mapping.
//!
//! Only retryable outcomes are reported as failed items. Rejections,
//! permanent failures (401 included) and unreadable messages are recorded
//! and alerted, then acknowledged, so they cannot turn into a retry storm.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bridge_shared::alerts::{OperationalAlert, kind};
use bridge_shared::failures::{FailureRecord, error_class, failure_status};
use bridge_shared::inbound::{
    FailureLog, InboundMessage, ObjectStore, UploadLedger, UploadOutcome, Uploader, parse_message,
};
use bridge_shared::ports::{DocumentStore, InfraError, MessageQueue};
use bridge_shared::recordengine::DocumentApi;
use bridge_shared::telemetry::{Metric, emit_metrics};
use futures::StreamExt;

/// SQS's longest visibility timeout: 12 hours.
const MAX_VISIBILITY_SECONDS: u64 = 43_200;

/// Changes how long a received message stays hidden.
#[async_trait]
pub trait VisibilityControl: Send + Sync {
    async fn change_visibility(&self, receipt_handle: &str, seconds: u64) -> Result<(), InfraError>;
}

/// Retry timing and limits of the handler.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Messages processed at once within one batch.
    pub concurrency: usize,
    /// Uploads must end this long before the Lambda deadline.
    pub deadline_margin: Duration,
    /// Hidden time after the first failed delivery when RecordEngine sent no `Retry-After`;
    /// it doubles with each further delivery.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        HandlerConfig {
            concurrency: 4,
            deadline_margin: Duration::from_secs(10),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(900),
        }
    }
}

/// Outcome of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageResult {
    /// Acknowledged: deleted from the queue by Lambda.
    Done { label: &'static str },
    /// Reported as a batch item failure, hidden for `retry_in`.
    Retry { retry_in: Duration },
}

/// The function's state, shared by the invocations of one execution environment.
pub struct App<O, V, S, R, F, Q> {
    pub uploader: Uploader<S, R, F, Q>,
    pub objects: O,
    pub visibility: V,
    pub config: HandlerConfig,
}

impl<O, V, S, R, F, Q> App<O, V, S, R, F, Q>
where
    O: ObjectStore,
    V: VisibilityControl,
    S: DocumentStore + UploadLedger,
    R: DocumentApi,
    F: FailureLog,
    Q: MessageQueue,
{
    /// Processes one batch and returns the messages to deliver again.
    pub async fn handle(&self, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
        let upload_deadline = deadline.map(|deadline| {
            deadline
                .checked_sub(self.config.deadline_margin)
                .unwrap_or_else(Instant::now)
        });
        let results: Vec<(SqsMessage, MessageResult)> = futures::stream::iter(event.records)
            .map(|message| async move {
                let result = self.handle_message(&message, upload_deadline).await;
                (message, result)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;

        let mut response = SqsBatchResponse::default();
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (message, result) in results {
            let message_id = message.message_id.clone().unwrap_or_default();
            match result {
                MessageResult::Done { label } => *counts.entry(label).or_default() += 1,
                MessageResult::Retry { retry_in } => {
                    *counts.entry("retry").or_default() += 1;
                    if message_id.is_empty() {
                        // Without an id the item cannot be reported; failing the whole batch
                        // would redeliver the others too, so the message is logged and dropped.
                        tracing::error!("a message to retry has no messageId; it cannot be reported as failed");
                        continue;
                    }
                    self.hide(&message, retry_in).await;
                    response.add_failure(message_id);
                }
            }
        }

        tracing::info!(counts = ?counts, failed_items = response.batch_item_failures.len(), "inbox batch processed");
        let metrics: Vec<Metric<'_>> = counts
            .iter()
            .map(|(label, count)| Metric {
                name: metric_name(label),
                value: *count as f64,
                unit: "Count",
            })
            .collect();
        if !metrics.is_empty() {
            emit_metrics(&[("Function", "s3-upload")], &metrics);
        }
        response
    }

    async fn handle_message(&self, message: &SqsMessage, deadline: Option<Instant>) -> MessageResult {
        let message_id = message.message_id.as_deref().unwrap_or("unknown");
        let body = message.body.as_deref().unwrap_or_default();
        let parsed = match parse_message(body) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.record_unreadable(message, &error.to_string()).await;
                return MessageResult::Done { label: "unreadable" };
            }
        };

        let objects = match parsed {
            InboundMessage::TestEvent => {
                tracing::info!(message_id, "s3:TestEvent acknowledged");
                return MessageResult::Done { label: "test_event" };
            }
            InboundMessage::Ignored(reason) => {
                tracing::info!(message_id, %reason, "message ignored");
                return MessageResult::Done { label: "ignored" };
            }
            InboundMessage::Objects(objects) => objects,
        };

        // A message normally names one object; several are uploaded in order,
        // and the message is retried if any of them should be.
        let mut retries: Vec<Option<Duration>> = Vec::new();
        let mut label = "skipped";
        for object in &objects {
            let outcome = self.uploader.upload_object(&self.objects, object, deadline).await;
            match &outcome {
                outcome if outcome.should_retry() => retries.push(outcome.retry_after()),
                UploadOutcome::Uploaded { .. } => label = "uploaded",
                other if other.category() == "failed" && label != "uploaded" => label = "failed",
                _ => {}
            }
        }
        if retries.is_empty() {
            return MessageResult::Done { label };
        }
        // The maximum wait any object requested, or the backoff when none did.
        let retry_in = retries
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_else(|| self.backoff(message));
        MessageResult::Retry { retry_in }
    }

    /// Exponential backoff by delivery count, with up to 10 % jitter so that
    /// a batch that failed together does not come back together.
    fn backoff(&self, message: &SqsMessage) -> Duration {
        let deliveries: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        let factor = 2u32.saturating_pow(deliveries.saturating_sub(1).min(16));
        let base = self.config.retry_base.saturating_mul(factor).min(self.config.retry_max);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.1);
        base + jitter
    }

    async fn hide(&self, message: &SqsMessage, retry_in: Duration) {
        let Some(receipt_handle) = message.receipt_handle.as_deref() else {
            return;
        };
        let seconds = retry_in.as_secs().clamp(1, MAX_VISIBILITY_SECONDS);
        if let Err(error) = self.visibility.change_visibility(receipt_handle, seconds).await {
            tracing::warn!(message_id = ?message.message_id, seconds, error = %error,
                "could not set the retry delay; the queue's visibility timeout applies");
        }
    }

    /// Stores an unreadable message whole, so that it can be fixed and replayed, and alerts.
    async fn record_unreadable(&self, message: &SqsMessage, error: &str) {
        let message_id = message.message_id.clone().unwrap_or_else(|| "unknown".into());
        tracing::error!(%message_id, %error, "unreadable inbox message; recorded and acknowledged");
        let failure_id = format!("inbox#message#{message_id}");
        let source_queue = message.event_source_arn.clone().unwrap_or_else(|| "unknown".into());
        let record = FailureRecord {
            failure_id: failure_id.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            recorded_by: self.uploader.config.recorded_by.clone(),
            destination: "upload".into(),
            error_class: error_class::UNREADABLE.into(),
            error: error.to_owned(),
            status: failure_status::OPEN.into(),
            attempts: 1,
            document_id: None,
            idempotency_key: None,
            correlation_key: None,
            external_refs: None,
            source_queue: Some(source_queue.clone()),
            body: message.body.clone(),
            attributes: serde_json::to_string(&message.attributes).ok(),
            s3_bucket: None,
            s3_key: None,
            s3_version_id: None,
            redriven_at: None,
            updated_at: None,
        };
        let stored = self.uploader.store_failure(&record).await;
        let alert = OperationalAlert::new(
            kind::UNREADABLE_MESSAGE,
            "warning",
            format!("unreadable_message#{message_id}"),
        )
        .param("source_queue", source_queue)
        .param("message_id", &message_id)
        .param("error", error);
        self.uploader.send_alert(alert, stored.then_some(failure_id)).await;
    }
}

fn metric_name(label: &str) -> &'static str {
    match label {
        "uploaded" => "InboxUploaded",
        "skipped" => "InboxSkipped",
        "failed" => "InboxFailed",
        "retry" => "InboxRetried",
        "unreadable" => "InboxUnreadable",
        "test_event" => "InboxTestEvents",
        _ => "InboxIgnored",
    }
}

/// [`VisibilityControl`] for the inbox queue.
#[derive(Debug, Clone)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsVisibility {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsVisibility {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl VisibilityControl for SqsVisibility {
    async fn change_visibility(&self, receipt_handle: &str, seconds: u64) -> Result<(), InfraError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|error| {
                InfraError::new(
                    "SQS",
                    "ChangeMessageVisibility",
                    bridge_shared::aws::sdk_error_text(&error),
                )
            })?;
        Ok(())
    }
}

/// Converts the Lambda deadline (epoch milliseconds) to an [`Instant`].
pub fn deadline_instant(deadline_epoch_ms: u64) -> Option<Instant> {
    if deadline_epoch_ms == 0 {
        return None;
    }
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    Some(Instant::now() + Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms)))
}

#[cfg(test)]
mod tests;
