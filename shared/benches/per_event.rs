//! Per-event CPU cost of the webhook path in process, with every AWS call
//! replaced by the in-memory fakes of `bridge_shared::fakes`.
//!
//! Run: `cargo bench -p bridge-shared --bench per_event`. Criterion writes
//! each estimate to `target/criterion/per_event/<name>/new/estimates.json`,
//! where `make bench` reads the medians.
//!
//! - `receive_*`: the whole `Intake::receive` (archive key hash, archive put,
//!   parse, fingerprint, claim, correlate, route, message serialisation,
//!   queue send, bookkeeping), each iteration on empty fakes so that every
//!   body is a new export;
//! - `parse_decide_*`: `parse_webhook` and `RuleSet::decide` only;
//! - `map_bill_*`: mapping a parsed export to the accounting `Bill`;
//! - `render_wecom_*`: rendering the low-confidence alert and the WeCom robot's
//!   markdown request body.
//!
//! `documented` is RecordEngine's documented payload
//! (`tests/fixtures/recordengine/document-exported.json`); `200_lines` is the
//! same payload with 200 line items.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bridge_shared::bill::map_bill;
use bridge_shared::dispatch::alert_text::{AlertLocale, render_document_alert, truncate_utf8};
use bridge_shared::dispatch::wecom::MARKDOWN_MAX_BYTES;
use bridge_shared::fakes::{FakeArchive, FakeQueues, FakeStore};
use bridge_shared::intake::{Intake, IntakeConfig, Outcome};
use bridge_shared::message::RoutedMessage;
use bridge_shared::payload::{ExportDocument, WebhookEvent, parse_webhook};
use bridge_shared::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

const DOCUMENTED: &str = include_str!("../../tests/fixtures/recordengine/document-exported.json");

/// Line items in the large payload; 200 × 82.50 adds up to the documented subtotal.
const MANY_LINES: usize = 200;

type FakeIntake = Intake<FakeArchive, FakeStore, FakeQueues>;

fn rules() -> Arc<RuleSet> {
    let destinations: BTreeSet<String> = DEFAULT_DESTINATIONS.iter().map(|name| name.to_string()).collect();
    Arc::new(RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations).expect("the bundled rules load"))
}

fn intake(rules: &Arc<RuleSet>) -> FakeIntake {
    Intake {
        archive: Arc::new(FakeArchive::default()),
        store: Arc::new(FakeStore::default()),
        queues: Arc::new(FakeQueues::default()),
        rules: Arc::clone(rules),
        config: IntakeConfig::default(),
    }
}

fn now() -> DateTime<Utc> {
    "2026-12-04T08:00:00Z".parse().expect("a valid timestamp")
}

fn with_many_lines() -> String {
    let mut root: Value = serde_json::from_str(DOCUMENTED).expect("the documented payload is JSON");
    let lines: Vec<Value> = (0..MANY_LINES)
        .map(|index| {
            json!({
                "description": format!("Consulting services, day {}", index + 1),
                "quantity": "1",
                "unit_price": "82.50",
                "amount": "82.50",
            })
        })
        .collect();
    root["line_items"] = Value::Array(lines);
    root.to_string()
}

fn with_low_confidence() -> String {
    let mut root: Value = serde_json::from_str(DOCUMENTED).expect("the documented payload is JSON");
    root["confidence_score"] = json!(42);
    root["confidence_label"] = json!("Low");
    root.to_string()
}

fn export(body: &str) -> ExportDocument {
    match parse_webhook(body.as_bytes()).expect("the payload parses") {
        WebhookEvent::Export(document) => *document,
        other => panic!("expected an export, got {other:?}"),
    }
}

/// Routes `body` through empty fakes and returns the message sent to the alerts queue.
fn alert_message(rules: &Arc<RuleSet>, body: &str) -> RoutedMessage {
    let intake = intake(rules);
    let (outcome, _) = futures::executor::block_on(intake.receive(body.as_bytes(), now())).expect("fakes do not fail");
    assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    let bodies = intake.queues.bodies("alerts");
    let first = bodies.first().expect("a low-confidence export is routed to alerts");
    serde_json::from_str(first).expect("the routed message reads back")
}

fn per_event(c: &mut Criterion) {
    let rules = rules();
    let many_lines = with_many_lines();
    let payloads = [("documented", DOCUMENTED), ("200_lines", many_lines.as_str())];
    let mut group = c.benchmark_group("per_event");

    for (name, body) in payloads {
        group.bench_function(format!("receive_{name}"), |b| {
            b.iter_batched(
                || intake(&rules),
                |intake| {
                    // The fakes' methods never await anything, so a plain executor drives the future to completion.
                    let (outcome, _) = futures::executor::block_on(intake.receive(black_box(body.as_bytes()), now()))
                        .expect("fakes do not fail");
                    assert!(matches!(outcome, Outcome::Accepted { .. }));
                    intake
                },
                BatchSize::SmallInput,
            )
        });
    }

    for (name, body) in payloads {
        group.bench_function(format!("parse_decide_{name}"), |b| {
            b.iter(|| {
                let document = match parse_webhook(black_box(body.as_bytes())) {
                    Ok(WebhookEvent::Export(document)) => document,
                    other => panic!("expected an export, got {other:?}"),
                };
                rules.decide(&document)
            })
        });
    }

    for (name, body) in payloads {
        let document = export(body);
        let annotations = rules.decide(&document).annotations;
        group.bench_function(format!("map_bill_{name}"), |b| {
            b.iter(|| map_bill(black_box(&document), &annotations).expect("the payload maps to a bill"))
        });
    }

    let low_confidence = with_low_confidence();
    let message = alert_message(&rules, &low_confidence);
    let document = export(&low_confidence);
    for (name, locale) in [("en", AlertLocale::En), ("zh_cn", AlertLocale::ZhCn)] {
        group.bench_function(format!("render_wecom_documented_{name}"), |b| {
            b.iter(|| {
                let alert = render_document_alert(black_box(&message), black_box(&document), locale);
                let content = truncate_utf8(&alert.markdown, MARKDOWN_MAX_BYTES);
                // The robot's request body, in the shape `WeComRobot::send_markdown` sends.
                json!({ "msgtype": "markdown", "markdown": { "content": content } }).to_string()
            })
        });
    }

    group.finish();
}

criterion_group! {
    name = benches;
    // Shorter than criterion's defaults (3 s warm-up, 5 s measurement) to keep `make bench` short.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = per_event
}
criterion_main!(benches);
