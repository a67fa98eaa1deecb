//! The dispatch engine: one SQS batch in, the failed items out.
//!
//! Each record is parsed on its own, so one bad message fails only itself.
//! Records run concurrently up to [`EngineConfig::concurrency`]. When less
//! than [`EngineConfig::deadline_margin`] of the invocation is left, no
//! further record is started and the untouched ones are reported failed, so
//! that a timeout never returns the whole batch.
//!
//! What happens to a failed record depends on its class:
//!
//! - retryable or ambiguous: `ChangeMessageVisibility` to the destination's
//!   `Retry-After`, else exponential backoff with jitter, and the record is
//!   reported failed. SQS counts the receive, and its redrive policy moves
//!   the message to the dead-letter queue after `maxReceiveCount` receives.
//! - throttled (rate budget empty, or the destination returned 429): not a
//!   failed attempt. A wait of up to 15 minutes sends a delayed copy of the
//!   message to the source queue and acknowledges the original, so the
//!   receive count does not grow; a longer wait (a daily limit) parks the
//!   message with a visibility timeout of up to 12 hours instead.
//! - permanent: the engine sends the message to the dead-letter queue itself,
//!   with attributes naming the error and its class, and acknowledges the
//!   original, so no retries are spent on it.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use tokio::time::Instant;

use super::backoff::{MAX_MESSAGE_DELAY, MAX_VISIBILITY, backoff, whole_seconds};
use super::budget::{BudgetScope, Budgets};
use super::destination::{Delivered, Delivery, DeliveryItem, Destination};
use super::error::DispatchError;
use super::inbound::Inbound;
use super::ports::{ArchiveReader, DispatchQueue};
use super::record::{DispatchClaim, DispatchRecord, dispatch_status};
use super::store::{VersionedStore, claim_dispatch, finish_dispatch};
use crate::failures::error_class;
use crate::json::Node;
use crate::payload::{WebhookEvent, classify};
use crate::ports::DocumentStore;
use crate::records::TimelineEntry;
use crate::telemetry::{Metric, emit_metrics};

/// Message attributes the engine sets on messages it re-sends.
pub mod attribute {
    /// On a dead-lettered message: the error, in words (at most 1,000 characters).
    pub const ERROR: &str = "error";
    /// On a dead-lettered message: one of [`crate::failures::error_class`].
    pub const ERROR_CLASS: &str = "error_class";
    /// On a dead-lettered message: when it was sent there (RFC 3339, UTC).
    pub const DEAD_LETTERED_AT: &str = "dead_lettered_at";
    /// On a dead-lettered message: the SQS message id it had on the source queue.
    pub const SOURCE_MESSAGE_ID: &str = "source_message_id";
    /// On a dead-lettered message: the component that sent it, `dispatch-<destination>`.
    pub const RECORDED_BY: &str = "recorded_by";
    /// On a delayed copy: how many rate-limit waits the message has had.
    pub const DEFERRALS: &str = "deferrals";
}

/// Tunables of the engine; the dispatcher function reads them from its environment.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The destination this dispatcher serves; messages for another are dead-lettered.
    pub destination: String,
    /// Records processed at once.
    pub concurrency: usize,
    /// No record is started with less than this left before the deadline.
    pub deadline_margin: Duration,
    /// Time kept after cutting a slow delivery short, to record its outcome.
    pub finish_reserve: Duration,
    /// How long a claim holds; longer than the function timeout, so that a
    /// live attempt never loses its claim.
    pub lease: Duration,
    /// First retry delay; doubled per failed attempt.
    pub retry_base: Duration,
    /// Maximum retry delay.
    pub retry_cap: Duration,
    /// Failed attempts after which the engine dead-letters a message itself.
    pub max_attempts: u32,
    /// Rate-limit waits after which a message is dead-lettered as throttled.
    pub max_deferrals: u32,
    /// Visibility given to records left untouched near the deadline.
    pub untouched_delay: Duration,
    /// Whether operational alerts are accepted (the alerts dispatcher).
    pub accept_alerts: bool,
}

impl EngineConfig {
    pub fn new(destination: &str) -> Self {
        EngineConfig {
            destination: destination.to_owned(),
            concurrency: 4,
            deadline_margin: Duration::from_secs(10),
            finish_reserve: Duration::from_secs(4),
            lease: Duration::from_secs(120),
            retry_base: Duration::from_secs(10),
            retry_cap: Duration::from_secs(900),
            max_attempts: 8,
            max_deferrals: 96,
            untouched_delay: Duration::from_secs(5),
            accept_alerts: destination == "alerts",
        }
    }
}

/// The engine's decision for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Delivered now.
    Delivered { remote_id: String },
    /// Delivered before: nothing was sent.
    Duplicate { remote_id: Option<String> },
    /// Reported failed with its visibility set to `delay`.
    Retry {
        delay: Duration,
        class: &'static str,
        error: String,
    },
    /// A copy delayed by `delay` was sent to the source queue; the original is acknowledged.
    Deferred { delay: Duration, reason: String },
    /// Reported failed with a long visibility timeout: a wait beyond SQS's 15-minute message delay.
    Parked { delay: Duration, reason: String },
    /// Sent to the dead-letter queue and acknowledged.
    DeadLettered { class: &'static str, error: String },
    /// Not started before the deadline; reported failed.
    Untouched,
}

impl Disposition {
    /// Whether Lambda should leave the message on the queue.
    pub fn reported_failed(&self) -> bool {
        matches!(
            self,
            Disposition::Retry { .. } | Disposition::Parked { .. } | Disposition::Untouched
        )
    }

    fn label(&self) -> &'static str {
        match self {
            Disposition::Delivered { .. } => "delivered",
            Disposition::Duplicate { .. } => "duplicate",
            Disposition::Retry { .. } => "retry",
            Disposition::Deferred { .. } => "deferred",
            Disposition::Parked { .. } => "parked",
            Disposition::DeadLettered { .. } => "dead_lettered",
            Disposition::Untouched => "untouched",
        }
    }
}

/// The outcome of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    pub message_id: String,
    pub disposition: Disposition,
}

/// The outcomes of one batch, in record order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchReport {
    pub outcomes: Vec<RecordOutcome>,
}

impl BatchReport {
    /// Builds the response for Lambda, which lists only the records to leave on the queue.
    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.set_failures(self.failed_ids());
        response
    }

    pub fn failed_ids(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|outcome| outcome.disposition.reported_failed())
            .map(|outcome| outcome.message_id.clone())
            .collect()
    }

    pub fn get(&self, message_id: &str) -> Option<&Disposition> {
        self.outcomes
            .iter()
            .find(|outcome| outcome.message_id == message_id)
            .map(|outcome| &outcome.disposition)
    }
}

/// Dispatches the messages of one destination queue.
pub struct Engine {
    pub config: EngineConfig,
    pub destination: Arc<dyn Destination>,
    /// The document table: dispatch records, budgets and locks.
    pub store: Arc<dyn VersionedStore>,
    /// The document table again, for timeline entries.
    pub documents: Arc<dyn DocumentStore>,
    pub archive: Arc<dyn ArchiveReader>,
    pub queue: Arc<dyn DispatchQueue>,
}

/// The parts of an SQS record the engine uses.
struct Received<'a> {
    message_id: String,
    receipt_handle: Option<&'a str>,
    body: &'a str,
    attributes: Vec<(String, String)>,
    deferrals: u32,
}

impl<'a> Received<'a> {
    fn new(record: &'a SqsMessage) -> Self {
        let attributes: Vec<(String, String)> = record
            .message_attributes
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.string_value.clone()?)))
            .collect();
        let deferrals = attributes
            .iter()
            .find(|(name, _)| name == attribute::DEFERRALS)
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        Received {
            message_id: record.message_id.clone().unwrap_or_default(),
            receipt_handle: record.receipt_handle.as_deref(),
            body: record.body.as_deref().unwrap_or_default(),
            attributes,
            deferrals,
        }
    }

    /// Returns the original attributes without the ones this engine sets, plus `extra`.
    fn attributes_with(&self, extra: &[(&'static str, String)]) -> Vec<(String, String)> {
        let mut attributes: Vec<(String, String)> = self
            .attributes
            .iter()
            .filter(|(name, _)| !extra.iter().any(|(extra_name, _)| extra_name == name))
            .cloned()
            .collect();
        attributes.extend(extra.iter().map(|(name, value)| ((*name).to_owned(), value.clone())));
        // SQS allows ten attributes per message.
        attributes.truncate(10);
        attributes
    }
}

fn as_pairs(attributes: &[(String, String)]) -> Vec<(&str, String)> {
    attributes
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect()
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Cuts an error for a message attribute; SQS attribute values are plain strings.
fn attribute_text(text: &str) -> String {
    let mut cut: String = text.chars().take(1000).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

impl Engine {
    /// Handles one batch; `deadline` is when Lambda stops the invocation.
    pub async fn handle(&self, event: &SqsEvent, deadline: Instant) -> BatchReport {
        let outcomes: Vec<RecordOutcome> = futures::stream::iter(event.records.iter())
            .map(|record| self.process(record, deadline))
            .buffered(self.config.concurrency.max(1))
            .collect()
            .await;
        let report = BatchReport { outcomes };
        self.release_untouched(event, &report, deadline).await;
        self.emit_metrics(&report);
        report
    }

    async fn process(&self, record: &SqsMessage, deadline: Instant) -> RecordOutcome {
        let received = Received::new(record);
        let message_id = received.message_id.clone();

        let disposition = if deadline.saturating_duration_since(Instant::now()) <= self.config.deadline_margin {
            Disposition::Untouched
        } else {
            self.dispatch(&received, deadline).await
        };
        RecordOutcome {
            message_id,
            disposition,
        }
    }

    async fn dispatch(&self, received: &Received<'_>, deadline: Instant) -> Disposition {
        let inbound = match Inbound::parse(received.body, self.config.accept_alerts) {
            Ok(inbound) => inbound,
            Err(error) => {
                tracing::error!(message_id = %received.message_id, error = %error, "unreadable message");
                return self
                    .dead_letter(
                        received,
                        error_class::UNREADABLE,
                        &format!("unreadable message: {error}"),
                    )
                    .await;
            }
        };
        let key = inbound.idempotency_key();
        if inbound.destination() != self.config.destination {
            let error = format!(
                "message for destination {} reached the {} dispatcher; check the queue configuration",
                inbound.destination(),
                self.config.destination
            );
            return self.dead_letter(received, error_class::PERMANENT, &error).await;
        }

        let owner = uuid::Uuid::new_v4().simple().to_string();
        let now = Utc::now();
        let mut fresh = DispatchRecord::new(&key, &self.config.destination, inbound.document_id(), &now_text());
        fresh.message_id = Some(received.message_id.clone());
        let lease_until = now.timestamp() + self.config.lease.as_secs() as i64;
        let claim = claim_dispatch(self.store.as_ref(), fresh, &owner, lease_until, now.timestamp()).await;
        let record = match claim {
            Ok(DispatchClaim::Claimed(record)) => record,
            Ok(DispatchClaim::Done(record)) => {
                tracing::info!(
                    message_id = %received.message_id,
                    idempotency_key = %key,
                    remote_id = ?record.remote_id,
                    "already delivered; acknowledging the copy"
                );
                return Disposition::Duplicate {
                    remote_id: record.remote_id,
                };
            }
            Ok(DispatchClaim::Busy(record)) => {
                let wait = Duration::from_secs((record.lease_until - now.timestamp()).max(0) as u64 + 1);
                let reason = "another copy of this message is being delivered".to_owned();
                return self.defer(received, wait, &reason, false).await;
            }
            Err(error) => {
                let error = DispatchError::from(error);
                return self.retry(received, &error, 1).await;
            }
        };

        let mut attempt = Attempt {
            record,
            owner: owner.clone(),
            inbound: &inbound,
            received,
        };
        if attempt.record.attempts >= self.config.max_attempts {
            let error = format!(
                "gave up after {} failed attempts; last error: {}",
                attempt.record.attempts,
                attempt.record.last_error.as_deref().unwrap_or("unknown")
            );
            let class = attempt
                .record
                .error_class
                .clone()
                .unwrap_or_else(|| error_class::RETRYABLE.into());
            attempt.record.status = dispatch_status::FAILED.into();
            self.save(&mut attempt).await;
            return self.dead_letter(received, static_class(&class), &error).await;
        }

        let item = match self.load_item(&inbound).await {
            Ok(item) => item,
            Err(error) => return self.fail(&mut attempt, error, None).await,
        };
        let scope = match self.destination.budget().await {
            Ok(scope) => scope,
            Err(error) => return self.fail(&mut attempt, error, None).await,
        };

        let mut delivery = Delivery::new(&key, &self.config.destination, item).with_history(
            attempt.record.attempts + 1,
            attempt.record.ambiguous,
            &attempt.record.parts_done,
        );
        if let Some(scope) = &scope {
            let budgets = Budgets {
                store: self.store.as_ref(),
            };
            match budgets.acquire(scope, Some((&owner, self.config.lease))).await {
                Ok(Ok(())) => {}
                Ok(Err((wait, reason))) => {
                    attempt.record.status = dispatch_status::RETRY.into();
                    self.save(&mut attempt).await;
                    return self.defer(received, wait, &reason, true).await;
                }
                Err(error) => return self.fail(&mut attempt, error.into(), None).await,
            }
            delivery = delivery.with_budget(Arc::clone(&self.store), scope.clone());
        }

        let result = self.deliver_within_deadline(&delivery, deadline).await;
        attempt.record.parts_done = delivery.parts_done();
        if let Some(scope) = &scope {
            let budgets = Budgets {
                store: self.store.as_ref(),
            };
            if let Err(error) = budgets.release(scope, &owner).await {
                tracing::warn!(budget = %scope.key, error = %error, "could not return a concurrency lease; it expires on its own");
            }
        }

        match result {
            Ok(delivered) => self.succeed(&mut attempt, delivered).await,
            Err(error) => self.fail(&mut attempt, error, scope.as_ref()).await,
        }
    }

    async fn deliver_within_deadline(
        &self,
        delivery: &Delivery,
        deadline: Instant,
    ) -> Result<Delivered, DispatchError> {
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.config.finish_reserve);
        match tokio::time::timeout(budget, self.destination.deliver(delivery)).await {
            Ok(result) => result,
            Err(_) => Err(DispatchError::ambiguous(format!(
                "{} did not answer within the {} ms left in this invocation",
                self.destination.kind(),
                budget.as_millis()
            ))),
        }
    }

    async fn load_item(&self, inbound: &Inbound) -> Result<DeliveryItem, DispatchError> {
        let message = match inbound {
            Inbound::Operational(alert) => return Ok(DeliveryItem::Operational(alert.clone())),
            Inbound::Routed(message) => message,
        };
        let payload = match &message.payload {
            Some(payload) => payload.clone(),
            None => {
                let body = self
                    .archive
                    .get(&message.archive.bucket, &message.archive.key)
                    .await?
                    .ok_or_else(|| {
                        DispatchError::permanent(format!(
                            "the message has no payload and the archive has no s3://{}/{}",
                            message.archive.bucket, message.archive.key
                        ))
                    })?;
                let text = String::from_utf8(body)
                    .map_err(|_| DispatchError::permanent("the archived payload is not UTF-8 text"))?;
                Node::parse(&text)
                    .map_err(|error| DispatchError::permanent(format!("the archived payload is not JSON: {error}")))?
            }
        };
        match classify(payload) {
            Ok(WebhookEvent::Export(document)) => Ok(DeliveryItem::Routed {
                message: message.clone(),
                document,
            }),
            Ok(WebhookEvent::Other { event }) => Err(DispatchError::permanent(format!(
                "the payload is not a document export (event {event:?})"
            ))),
            Err(error) => Err(DispatchError::permanent(format!("the payload cannot be read: {error}"))),
        }
    }

    async fn succeed(&self, attempt: &mut Attempt<'_>, delivered: Delivered) -> Disposition {
        let record = &mut attempt.record;
        record.status = dispatch_status::DONE.into();
        record.remote_id = Some(delivered.remote_id.clone());
        record.remote_detail = Some(delivered.detail.clone());
        record.ambiguous = false;
        record.delivered_at = Some(now_text());
        self.save(attempt).await;

        tracing::info!(
            message_id = %attempt.received.message_id,
            idempotency_key = %attempt.record.idempotency_key,
            document_id = ?attempt.record.document_id,
            destination = %self.config.destination,
            remote_id = %delivered.remote_id,
            "delivered"
        );
        self.timeline(
            attempt.inbound,
            "delivered",
            &format!("{}: {}", self.destination.kind(), delivered.detail),
            serde_json::json!({
                "remote_id": delivered.remote_id,
                "destination_kind": self.destination.kind(),
                "idempotency_key": attempt.record.idempotency_key,
            }),
        )
        .await;
        Disposition::Delivered {
            remote_id: delivered.remote_id,
        }
    }

    async fn fail(&self, attempt: &mut Attempt<'_>, error: DispatchError, scope: Option<&BudgetScope>) -> Disposition {
        let record = &mut attempt.record;
        record.last_error = Some(error.reason().to_owned());
        record.error_class = Some(error.class().to_owned());

        if let DispatchError::Throttled { retry_after, reason } = &error {
            // Not a failed attempt: the destination did not process the request.
            record.status = dispatch_status::RETRY.into();
            self.save(attempt).await;
            if let Some(scope) = scope {
                let until = Utc::now().timestamp_millis() + retry_after.as_millis() as i64;
                let budgets = Budgets {
                    store: self.store.as_ref(),
                };
                if let Err(block_error) = budgets.block_until(scope, until).await {
                    tracing::warn!(budget = %scope.key, error = %block_error, "could not share a 429 wait with other invocations");
                }
            }
            return self.defer(attempt.received, *retry_after, reason, true).await;
        }

        record.attempts += 1;
        if matches!(error, DispatchError::Ambiguous { .. }) {
            record.ambiguous = true;
        }
        let permanent = matches!(error, DispatchError::Permanent { .. });
        let exhausted = record.attempts >= self.config.max_attempts;
        record.status = if permanent || exhausted {
            dispatch_status::FAILED.into()
        } else {
            dispatch_status::RETRY.into()
        };
        let attempts = record.attempts;
        self.save(attempt).await;

        tracing::warn!(
            message_id = %attempt.received.message_id,
            idempotency_key = %attempt.record.idempotency_key,
            document_id = ?attempt.record.document_id,
            destination = %self.config.destination,
            error_class = error.class(),
            attempts,
            error = %error,
            "delivery failed"
        );
        self.timeline(
            attempt.inbound,
            "dispatch_failed",
            &format!("{} ({}): {}", self.destination.kind(), error.class(), error.reason()),
            serde_json::json!({
                "error_class": error.class(),
                "attempts": attempts,
                "idempotency_key": attempt.record.idempotency_key,
            }),
        )
        .await;

        if permanent {
            return self.dead_letter(attempt.received, error.class(), error.reason()).await;
        }
        if exhausted {
            let reason = format!(
                "gave up after {attempts} failed attempts; last error: {}",
                error.reason()
            );
            return self.dead_letter(attempt.received, error.class(), &reason).await;
        }
        self.retry(attempt.received, &error, attempts).await
    }

    /// Writes the record if this attempt still owns it. A record that leaves
    /// `in_progress` gives up its lease with this write.
    async fn save(&self, attempt: &mut Attempt<'_>) {
        let record = &mut attempt.record;
        record.updated_at = now_text();
        if record.status != dispatch_status::IN_PROGRESS {
            record.lease_until = 0;
            record.owner = None;
        }
        match finish_dispatch(self.store.as_ref(), record, &attempt.owner).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                idempotency_key = %record.idempotency_key,
                "the dispatch lease was taken over by another copy; this copy's outcome was not recorded"
            ),
            Err(error) => tracing::error!(
                idempotency_key = %record.idempotency_key,
                error = %error,
                "could not record the dispatch outcome"
            ),
        }
    }

    async fn retry(&self, received: &Received<'_>, error: &DispatchError, attempts: u32) -> Disposition {
        let delay = match error {
            DispatchError::Retryable {
                retry_after: Some(after),
                ..
            } => *after,
            _ => backoff(attempts, self.config.retry_base, self.config.retry_cap),
        };
        let delay = whole_seconds(delay, Duration::from_secs(1), MAX_VISIBILITY);
        self.set_visibility(received, delay).await;
        Disposition::Retry {
            delay,
            class: error.class(),
            error: error.reason().to_owned(),
        }
    }

    /// Waits for a rate budget without counting a failed attempt.
    async fn defer(&self, received: &Received<'_>, wait: Duration, reason: &str, counts: bool) -> Disposition {
        let jitter = Duration::from_millis(rand::random_range(0..1000));
        let delay = whole_seconds(wait + jitter, Duration::from_secs(1), MAX_VISIBILITY);
        if counts && received.deferrals >= self.config.max_deferrals {
            let error = format!(
                "waited for the rate limit {} times; last reason: {reason}",
                received.deferrals
            );
            return self.dead_letter(received, error_class::THROTTLED, &error).await;
        }

        if delay <= MAX_MESSAGE_DELAY {
            let deferrals = received.deferrals + u32::from(counts);
            let attributes = received.attributes_with(&[(attribute::DEFERRALS, deferrals.to_string())]);
            match self
                .queue
                .send_delayed(received.body, delay, &as_pairs(&attributes))
                .await
            {
                Ok(()) => {
                    tracing::info!(message_id = %received.message_id, delay_s = delay.as_secs(), reason, "deferred");
                    return Disposition::Deferred {
                        delay,
                        reason: reason.to_owned(),
                    };
                }
                Err(error) => {
                    tracing::warn!(message_id = %received.message_id, error = %error, "could not send a delayed copy; parking the message instead");
                }
            }
        }
        self.set_visibility(received, delay).await;
        tracing::info!(message_id = %received.message_id, delay_s = delay.as_secs(), reason, "parked");
        Disposition::Parked {
            delay,
            reason: reason.to_owned(),
        }
    }

    async fn dead_letter(&self, received: &Received<'_>, class: &'static str, error: &str) -> Disposition {
        let attributes = received.attributes_with(&[
            (attribute::ERROR, attribute_text(error)),
            (attribute::ERROR_CLASS, class.to_owned()),
            (attribute::DEAD_LETTERED_AT, now_text()),
            (attribute::SOURCE_MESSAGE_ID, received.message_id.clone()),
            (attribute::RECORDED_BY, format!("dispatch-{}", self.config.destination)),
        ]);
        match self
            .queue
            .send_to_dead_letter(received.body, &as_pairs(&attributes))
            .await
        {
            Ok(()) => {
                tracing::error!(message_id = %received.message_id, error_class = class, error, "sent to the dead-letter queue");
                Disposition::DeadLettered {
                    class,
                    error: error.to_owned(),
                }
            }
            Err(send_error) => {
                let combined = format!("{error}; sending to the dead-letter queue failed: {send_error}");
                tracing::error!(message_id = %received.message_id, error = %combined, "could not dead-letter; leaving the message on the queue");
                let delay = backoff(1, self.config.retry_base, self.config.retry_cap);
                let delay = whole_seconds(delay, Duration::from_secs(1), MAX_VISIBILITY);
                self.set_visibility(received, delay).await;
                Disposition::Retry {
                    delay,
                    class,
                    error: combined,
                }
            }
        }
    }

    async fn set_visibility(&self, received: &Received<'_>, delay: Duration) {
        let Some(handle) = received.receipt_handle else {
            tracing::warn!(message_id = %received.message_id, "no receipt handle; the queue's visibility timeout applies");
            return;
        };
        if let Err(error) = self.queue.change_visibility(handle, delay).await {
            tracing::warn!(message_id = %received.message_id, error = %error, "could not change the visibility timeout; the queue's default applies");
        }
    }

    /// Brings untouched records back soon instead of after the queue's full
    /// visibility timeout, while time remains.
    async fn release_untouched(&self, event: &SqsEvent, report: &BatchReport, deadline: Instant) {
        let untouched: Vec<&SqsMessage> = event
            .records
            .iter()
            .filter(|record| {
                let id = record.message_id.as_deref().unwrap_or_default();
                report.get(id) == Some(&Disposition::Untouched)
            })
            .collect();
        if untouched.is_empty() {
            return;
        }
        tracing::warn!(
            count = untouched.len(),
            "deadline near: records left for the next invocation"
        );
        let remaining = deadline.saturating_duration_since(Instant::now());
        let release = futures::future::join_all(untouched.iter().map(|record| async {
            let received = Received::new(record);
            self.set_visibility(&received, self.config.untouched_delay).await;
        }));
        // Best effort: the reply to Lambda matters more than the early return.
        let _ = tokio::time::timeout(remaining / 2, release).await;
    }

    async fn timeline(&self, inbound: &Inbound, kind: &str, detail: &str, data: serde_json::Value) {
        let Some(document_id) = inbound.document_id() else {
            return;
        };
        let entry = TimelineEntry::new(document_id, Utc::now(), kind, detail)
            .with_destination(&self.config.destination)
            .with_data(&data);
        if let Err(error) = self.documents.append_timeline(&entry).await {
            tracing::warn!(document_id, error = %error, "could not append to the document timeline");
        }
    }

    fn emit_metrics(&self, report: &BatchReport) {
        let mut counts = std::collections::BTreeMap::<&str, f64>::new();
        for outcome in &report.outcomes {
            *counts.entry(outcome.disposition.label()).or_default() += 1.0;
        }
        let metrics: Vec<Metric<'_>> = counts
            .iter()
            .map(|(name, value)| Metric {
                name,
                value: *value,
                unit: "Count",
            })
            .collect();
        if !metrics.is_empty() {
            emit_metrics(&[("Destination", self.config.destination.as_str())], &metrics);
        }
    }
}

/// One claimed attempt.
struct Attempt<'a> {
    record: DispatchRecord,
    /// The claimant id the stored record must still carry for a write to count.
    owner: String,
    inbound: &'a Inbound,
    received: &'a Received<'a>,
}

fn static_class(class: &str) -> &'static str {
    match class {
        error_class::PERMANENT => error_class::PERMANENT,
        error_class::THROTTLED => error_class::THROTTLED,
        error_class::AMBIGUOUS => error_class::AMBIGUOUS,
        error_class::UNREADABLE => error_class::UNREADABLE,
        _ => error_class::RETRYABLE,
    }
}
