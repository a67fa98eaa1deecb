//! Dead-letter batches in, failure records and alerts out.
//!
//! Every message is stored as a failure record before anything else. Only a
//! record that could not be stored is reported as a batch item failure, so
//! that SQS delivers the message again. A malformed message is recorded as
//! `unreadable` and acknowledged like any other. Alerts go through the
//! digest budget ([`crate::digest`]) and straight to the channels
//! ([`crate::channels`]); an alert that cannot be sent never fails a message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bridge_shared::alerts::{OperationalAlert, kind};
use bridge_shared::dispatch::alert_text::{AlertLocale, render_operational_alert};
use bridge_shared::dispatch::store::VersionedStore;
use bridge_shared::ports::DocumentStore;
use bridge_shared::records::TimelineEntry;
use bridge_shared::telemetry::{Metric, emit_metrics};
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;

use crate::channels::{AlertSender, SendOutcome};
use crate::dead_letter::{ALERTS_DESTINATION, DeadLetter, Lookups, QueueMap, read_dead_letter};
use crate::digest::{DigestConfig, Digests, HeldAlert, Plan};
use crate::failure_store::{FailureStore, alert_state};

/// Lines listed in a digest; the rest are counted.
const DIGEST_LINES: usize = 15;

/// Settings of the handler.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    pub queues: QueueMap,
    pub locale: AlertLocale,
    /// The budget of dead letters from the destination and inbox queues.
    pub failures: DigestConfig,
    /// The stricter budget of dead letters from the alerts queue.
    pub alert_channel: DigestConfig,
    /// Days a failure record is kept (the failure table's TTL).
    pub retention_days: i64,
    /// Messages read at once within one batch.
    pub concurrency: usize,
}

impl HandlerConfig {
    /// Builds the defaults: two messages per minute for failures, one an hour for
    /// failed alerts, records kept 90 days.
    pub fn new(queues: QueueMap, locale: AlertLocale) -> Self {
        HandlerConfig {
            queues,
            locale,
            failures: DigestConfig {
                scope: "failures".into(),
                window: Duration::from_secs(60),
                max_window: Duration::from_secs(900),
                max_per_window: 2,
                max_held: 100,
                max_send_failures: 3,
            },
            alert_channel: DigestConfig {
                scope: "alert-channel".into(),
                window: Duration::from_secs(3600),
                max_window: Duration::from_secs(3600),
                max_per_window: 1,
                max_held: 100,
                max_send_failures: 3,
            },
            retention_days: 90,
            concurrency: 8,
        }
    }
}

/// The outcome of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageResult {
    pub message_id: String,
    pub failure_id: Option<String>,
    /// `recorded`, `already_recorded` or `store_failed`.
    pub outcome: &'static str,
    pub destination: Option<String>,
    pub error_class: Option<String>,
}

/// The outcome of one batch or flush.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub messages: Vec<MessageResult>,
    /// Alert messages sent, by scope.
    pub alerts_sent: BTreeMap<String, u32>,
    /// Alert messages that no channel took.
    pub alert_failures: u32,
}

impl Report {
    /// Builds the response for Lambda: only the messages whose record was not stored.
    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.set_failures(
            self.messages
                .iter()
                .filter(|result| result.outcome == "store_failed")
                .map(|result| result.message_id.clone())
                .collect::<Vec<_>>(),
        );
        response
    }
}

/// The function's state, shared by the invocations of one execution environment.
pub struct App {
    pub failures: Arc<dyn FailureStore>,
    /// The document table: dispatch records and digest items.
    pub versioned: Arc<dyn VersionedStore>,
    /// The document table: upload and document records, timelines.
    pub documents: Arc<dyn DocumentStore>,
    pub sender: Arc<dyn AlertSender>,
    pub config: HandlerConfig,
}

impl App {
    /// Handles one batch from any dead-letter queue.
    pub async fn handle(&self, event: &SqsEvent) -> Report {
        // The futures are built before the stream so that the returned future stays `Send`.
        let pending: Vec<_> = event.records.iter().map(|message| self.record(message)).collect();
        let results: Vec<(MessageResult, Option<DeadLetter>)> = futures::stream::iter(pending)
            .buffered(self.config.concurrency.max(1))
            .collect()
            .await;

        let mut report = Report::default();
        let mut to_alert: BTreeMap<String, Vec<HeldAlert>> = BTreeMap::new();
        for (result, dead_letter) in results {
            if let Some(dead_letter) = dead_letter {
                let scope = self.scope_of(&dead_letter).scope.clone();
                to_alert.entry(scope).or_default().push(HeldAlert {
                    failure_id: dead_letter.failure.record.failure_id.clone(),
                    line: dead_letter.line.clone(),
                    alert: dead_letter.alert.clone(),
                    send_failures: 0,
                });
            }
            report.messages.push(result);
        }

        for config in [&self.config.failures, &self.config.alert_channel] {
            let incoming = to_alert.remove(&config.scope).unwrap_or_default();
            self.alert(config, &incoming, &mut report).await;
        }
        self.emit_metrics(&report);
        report
    }

    /// Sends what the digests hold once their windows allow it. The flush
    /// schedule calls this, so that held failures are named within a window
    /// even when no further dead letter arrives.
    pub async fn flush(&self) -> Report {
        let mut report = Report::default();
        for config in [&self.config.failures, &self.config.alert_channel] {
            self.alert(config, &[], &mut report).await;
        }
        self.emit_metrics(&report);
        report
    }

    fn scope_of(&self, dead_letter: &DeadLetter) -> &DigestConfig {
        if dead_letter.failure.record.destination == ALERTS_DESTINATION {
            &self.config.alert_channel
        } else {
            &self.config.failures
        }
    }

    /// Stores one message's failure record. Returns the dead letter when it
    /// still needs an alert: new, or stored earlier by an invocation that
    /// stopped before its alert went out.
    async fn record(&self, message: &SqsMessage) -> (MessageResult, Option<DeadLetter>) {
        let lookups = Lookups {
            versioned: self.versioned.as_ref(),
            documents: self.documents.as_ref(),
        };
        let now = Utc::now();
        let dead_letter =
            read_dead_letter(message, &self.config.queues, &lookups, now, self.config.retention_days).await;
        let record = &dead_letter.failure.record;
        let mut result = MessageResult {
            message_id: message.message_id.clone().unwrap_or_default(),
            failure_id: Some(record.failure_id.clone()),
            outcome: "recorded",
            destination: Some(record.destination.clone()),
            error_class: Some(record.error_class.clone()),
        };

        match self.failures.insert_new(&dead_letter.failure).await {
            Ok(true) => {
                tracing::error!(
                    failure_id = %record.failure_id,
                    message_id = %result.message_id,
                    destination = %record.destination,
                    document_id = ?record.document_id,
                    error_class = %record.error_class,
                    error = %record.error,
                    "dead letter recorded"
                );
                self.timeline(&dead_letter).await;
                (result, Some(dead_letter))
            }
            Ok(false) => {
                result.outcome = "already_recorded";
                let pending = match self.failures.get(&record.failure_id).await {
                    Ok(stored) => {
                        stored.is_some_and(|stored| stored.alert_state.as_deref() == Some(alert_state::PENDING))
                    }
                    Err(error) => {
                        tracing::warn!(failure_id = %record.failure_id, error = %error, "could not read the stored failure record");
                        false
                    }
                };
                tracing::info!(failure_id = %record.failure_id, message_id = %result.message_id, alert_pending = pending,
                    "dead letter delivered again; its record exists");
                (result, pending.then_some(dead_letter))
            }
            Err(error) => {
                tracing::error!(
                    failure_id = %record.failure_id,
                    message_id = %result.message_id,
                    error = %error,
                    "could not store the failure record; the message stays on the dead-letter queue"
                );
                result.outcome = "store_failed";
                (result, None)
            }
        }
    }

    async fn timeline(&self, dead_letter: &DeadLetter) {
        let record = &dead_letter.failure.record;
        let Some(document_id) = record.document_id else {
            return;
        };
        let entry = TimelineEntry::new(
            document_id,
            Utc::now(),
            "dead_lettered",
            format!("{} ({}): {}", record.destination, record.error_class, record.error),
        )
        .with_destination(&record.destination)
        .with_data(&serde_json::json!({
            "failure_id": record.failure_id,
            "error_class": record.error_class,
            "attempts": record.attempts,
            "idempotency_key": record.idempotency_key,
        }));
        if let Err(error) = self.documents.append_timeline(&entry).await {
            tracing::warn!(document_id, error = %error, "could not append to the document timeline");
        }
    }

    async fn alert(&self, config: &DigestConfig, incoming: &[HeldAlert], report: &mut Report) {
        let digests = Digests {
            store: self.versioned.as_ref(),
        };
        let plan = match digests.admit(config, incoming, || Utc::now().timestamp_millis()).await {
            Ok(plan) => plan,
            Err(error) => {
                // The records are stored; a person still finds them with `bridgectl dlq list`.
                tracing::error!(scope = %config.scope, error = %error, count = incoming.len(),
                    "could not update the alert digest; these failures are not alerted");
                report.alert_failures += 1;
                return;
            }
        };
        let Plan::Send { alerts, unlisted } = plan else {
            if !incoming.is_empty() {
                tracing::info!(scope = %config.scope, count = incoming.len(), "alert window spent; failures held for the next digest");
            }
            return;
        };

        let message = self.message(config, &alerts, unlisted);
        let rendered = render_operational_alert(&message, self.config.locale);
        match self.sender.send(&rendered).await {
            SendOutcome::Sent(channels) => {
                tracing::info!(scope = %config.scope, failures = alerts.len() as u64 + unlisted, channels = ?channels,
                    subject = %rendered.subject, "alert sent");
                *report.alerts_sent.entry(config.scope.clone()).or_default() += 1;
                for alert in &alerts {
                    if let Err(error) = self
                        .failures
                        .set_alert_state(&alert.failure_id, alert_state::SENT)
                        .await
                    {
                        tracing::warn!(failure_id = %alert.failure_id, error = %error, "could not mark the failure alerted");
                    }
                }
            }
            SendOutcome::Deferred(reason) => {
                tracing::info!(scope = %config.scope, reason = %reason, "alert waits for the channel's rate budget");
                self.put_back(&digests, config, &alerts, unlisted, false).await;
            }
            SendOutcome::Failed(error) => {
                tracing::error!(scope = %config.scope, error = %error, "no alert channel took the alert; it is kept for the next window");
                report.alert_failures += 1;
                self.put_back(&digests, config, &alerts, unlisted, true).await;
            }
        }
    }

    async fn put_back(
        &self,
        digests: &Digests<'_>,
        config: &DigestConfig,
        alerts: &[HeldAlert],
        unlisted: u64,
        failed: bool,
    ) {
        match digests.put_back(config, alerts, unlisted, failed).await {
            Ok(dropped) => {
                for alert in dropped {
                    tracing::error!(failure_id = %alert.failure_id, attempts = alert.send_failures,
                        "giving up on alerting this failure; its record stays in the failure table");
                }
            }
            Err(error) => {
                tracing::error!(scope = %config.scope, error = %error, "could not keep the unsent alert for later")
            }
        }
    }

    /// Builds the alert to send: a failure alone gets its own, more get a digest.
    fn message(&self, config: &DigestConfig, alerts: &[HeldAlert], unlisted: u64) -> OperationalAlert {
        if let ([only], 0) = (alerts, unlisted) {
            return only.alert.clone();
        }
        let total = alerts.len() as u64 + unlisted;
        let mut lines: Vec<String> = alerts
            .iter()
            .take(DIGEST_LINES)
            .map(|alert| alert.line.clone())
            .collect();
        let more = total - lines.len() as u64;
        let zh = self.config.locale == AlertLocale::ZhCn;
        if more > 0 {
            lines.push(if zh {
                format!("…另有 {more} 个")
            } else {
                format!("… and {more} more")
            });
        }
        lines.push(if zh {
            "详情：bridgectl dlq list --since 24h".to_owned()
        } else {
            "Details: bridgectl dlq list --since 24h".to_owned()
        });
        let first = alerts.first().map(|alert| alert.failure_id.as_str()).unwrap_or("none");
        OperationalAlert::new(
            kind::FAILURE_DIGEST,
            "error",
            format!("digest:{}:{first}:{total}", config.scope),
        )
        .param("count", total.to_string())
        .param("summary", lines.join("\n"))
    }

    fn emit_metrics(&self, report: &Report) {
        let mut by_destination: BTreeMap<&str, f64> = BTreeMap::new();
        for result in &report.messages {
            if result.outcome == "recorded"
                && let Some(destination) = &result.destination
            {
                *by_destination.entry(destination.as_str()).or_default() += 1.0;
            }
        }
        for (destination, count) in by_destination {
            emit_metrics(
                &[("Destination", destination)],
                &[Metric {
                    name: "DeadLetters",
                    value: count,
                    unit: "Count",
                }],
            );
        }
        let sent: u32 = report.alerts_sent.values().sum();
        emit_metrics(
            &[("Function", "dlq-alert")],
            &[
                Metric {
                    name: "AlertMessagesSent",
                    value: f64::from(sent),
                    unit: "Count",
                },
                Metric {
                    name: "AlertDeliveryFailures",
                    value: f64::from(report.alert_failures),
                    unit: "Count",
                },
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use aws_lambda_events::event::sqs::SqsMessage;
    use bridge_shared::dispatch::alert_text::RenderedAlert;
    use bridge_shared::fakes::FakeStore;

    use super::*;
    use crate::failure_store::MemoryFailureStore;

    /// A channel that records what it took, or fails while `fail` is set.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<RenderedAlert>>,
        fail: Mutex<bool>,
    }

    #[async_trait]
    impl AlertSender for Recorder {
        async fn send(&self, alert: &RenderedAlert) -> SendOutcome {
            if *self.fail.lock().unwrap() {
                return SendOutcome::Failed("robot unreachable".into());
            }
            self.sent.lock().unwrap().push(alert.clone());
            SendOutcome::Sent(vec!["wecom".into()])
        }
    }

    fn app(locale: AlertLocale) -> (App, Arc<Recorder>, Arc<MemoryFailureStore>) {
        let store = Arc::new(FakeStore::default());
        let recorder = Arc::new(Recorder::default());
        let failures = Arc::new(MemoryFailureStore::default());
        let queues = QueueMap {
            dead_letter_queues: [(
                "crm".to_owned(),
                "arn:aws:sqs:us-east-1:000000000000:crm-dlq".to_owned(),
            )]
            .into(),
            source_queues: BTreeMap::new(),
        };
        let mut config = HandlerConfig::new(queues, locale);
        config.failures.window = Duration::from_millis(50);
        config.failures.max_window = Duration::from_millis(50);
        let app = App {
            failures: failures.clone(),
            versioned: store.clone(),
            documents: store,
            sender: recorder.clone(),
            config,
        };
        (app, recorder, failures)
    }

    fn unreadable_message(id: &str) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.into());
        message.body = Some("not json".into());
        message.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:crm-dlq".into());
        message
    }

    fn batch(ids: &[&str]) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = ids.iter().map(|id| unreadable_message(id)).collect();
        event
    }

    #[tokio::test]
    async fn chinese_digest_names_the_count() {
        let (app, recorder, _) = app(AlertLocale::ZhCn);

        app.handle(&batch(&["a", "b", "c"])).await;

        let sent = recorder.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].subject.contains("3 个失败待处理"), "{}", sent[0].subject);
        assert!(
            sent[0].markdown.contains("详情：bridgectl dlq list"),
            "{}",
            sent[0].markdown
        );
        assert!(sent[0].markdown.contains("crm"), "{}", sent[0].markdown);
    }

    #[tokio::test]
    async fn failed_send_is_retried_by_the_flush() {
        let (app, recorder, failures) = app(AlertLocale::En);
        *recorder.fail.lock().unwrap() = true;

        let report = app.handle(&batch(&["a"])).await;

        assert_eq!(report.alert_failures, 1);
        assert!(report.response().batch_item_failures.is_empty(), "the record is stored");
        assert_eq!(failures.all()[0].alert_state.as_deref(), Some(alert_state::PENDING));

        *recorder.fail.lock().unwrap() = false;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let flushed = app.flush().await;

        assert_eq!(flushed.alerts_sent.get("failures"), Some(&1));
        let sent = recorder.sent.lock().unwrap();
        assert!(sent[0].subject.contains("Unreadable message"), "{}", sent[0].subject);
        assert_eq!(failures.all()[0].alert_state.as_deref(), Some(alert_state::SENT));
    }

    #[tokio::test]
    async fn pending_record_is_alerted_on_redelivery() {
        let (app, recorder, failures) = app(AlertLocale::En);
        *recorder.fail.lock().unwrap() = true;
        app.handle(&batch(&["a"])).await;
        // The digest item is lost, as if the invocation stopped before updating it.
        let emptied = serde_json::json!({
            "pk": "alertdigest#failures", "sk": "digest", "version": 99, "window_started_ms": 0, "window_ms": 1,
            "sent_in_window": 0, "saturated_windows": 0, "held": [], "expires_at": 0
        });
        assert!(
            app.versioned.store(emptied, Some(2)).await.unwrap(),
            "the digest item had version 2"
        );
        *recorder.fail.lock().unwrap() = false;
        tokio::time::sleep(Duration::from_millis(60)).await;

        let report = app.handle(&batch(&["a"])).await;

        assert_eq!(report.messages[0].outcome, "already_recorded");
        assert_eq!(
            recorder.sent.lock().unwrap().len(),
            1,
            "the pending record is alerted now"
        );
        assert_eq!(failures.all().len(), 1);
    }
}
