//! `bridgectl dlq` end to end: QuickBooks fails, messages exhaust their
//! receives and reach the dead-letter queue, the dead-letter function
//! records them, the sink recovers, and the real binary lists, shows and
//! redrives them to the dispatcher, which books each Bill once.

mod support;

use std::time::Duration;

use bridge_shared::failures::failure_status;
use bridge_shared::json::Node;
use bridge_shared::message::{ArchivePointer, MESSAGE_VERSION, RoutedMessage, idempotency_key};
use bridge_shared::rules::{Approval, Decision};
use dlq_alert::failure_store::FailureStore;
use serde_json::{Value, json};
use support::*;

fn routed(document_id: i64) -> RoutedMessage {
    let mut payload: Value = serde_json::from_str(DOCUMENTED).unwrap();
    payload["id"] = json!(document_id);
    payload["extracted_fields"]["currency"] = json!("USD");
    payload["extracted_fields"]["invoice_number"] = json!(format!("INV-{document_id}"));
    let fingerprint = format!("{document_id:064x}");
    RoutedMessage {
        message_version: MESSAGE_VERSION,
        document_id,
        fingerprint: fingerprint.clone(),
        destination: "accounting".into(),
        idempotency_key: idempotency_key(document_id, &fingerprint, "accounting"),
        approval: Approval::Required,
        decision: Decision {
            ruleset_version: "2026-12-04.1".into(),
            rules_fired: vec!["approval-required".into()],
            routes: Vec::new(),
            annotations: Vec::new(),
        },
        origin: None,
        archive: ArchivePointer {
            bucket: "archive".into(),
            key: format!("raw/2026/12/04/{document_id}.json"),
        },
        received_at: "2026-12-04T08:00:00Z".into(),
        payload: Some(Node::parse(&payload.to_string()).unwrap()),
    }
}

fn attributes(message: &RoutedMessage) -> Vec<(&'static str, String)> {
    vec![
        ("destination", message.destination.clone()),
        ("document_id", message.document_id.to_string()),
        ("idempotency_key", message.idempotency_key.clone()),
        ("fingerprint", message.fingerprint.clone()),
    ]
}

async fn queue_is_empty(pipeline: &Pipeline, url: &str) -> bool {
    let attributes = pipeline
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
        attributes
            .attributes()
            .and_then(|map| map.get(&name))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages) == 0
        && count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == 0
}

#[tokio::test]
async fn redrive_books_each_bill_once() {
    let pipeline = Pipeline::create(2).await;
    let engine = pipeline.accounting_engine();
    pipeline
        .fault(&pipeline.quickbooks, json!({"status": 500, "times": 100}))
        .await;
    let messages: Vec<RoutedMessage> = (7101..=7103).map(routed).collect();
    for message in &messages {
        pipeline
            .send(
                "accounting",
                &serde_json::to_string(message).unwrap(),
                &attributes(message),
            )
            .await;
    }

    // Each message fails twice, then the redrive policy moves it.
    let accounting = &pipeline.queues["accounting"];
    let mut dead_letters = Vec::new();
    pipeline
        .dispatch_accounting(&engine, async || {
            let event = receive(
                &pipeline.clients,
                &accounting.dead_letter_url,
                &accounting.dead_letter_arn,
            )
            .await;
            dead_letters.extend(event.records);
            dead_letters.len() >= 3
        })
        .await;
    assert_eq!(dead_letters.len(), 3);
    assert!(pipeline.bills().await.is_empty(), "QuickBooks failed every attempt");

    // The dead-letter function records all three but, as if it stopped
    // before Lambda acknowledged the batch, the third stays in the queue.
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = dead_letters.clone();
    let report = pipeline.dead_letter_app().handle(&event).await;
    assert!(report.response().batch_item_failures.is_empty());
    event.records.truncate(2);
    settle(&pipeline.clients, &accounting.dead_letter_url, &event, &[]).await;
    pipeline
        .clients
        .sqs
        .change_message_visibility()
        .queue_url(&accounting.dead_letter_url)
        .set_receipt_handle(dead_letters[2].receipt_handle.clone())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let stale_id = dlq_alert::dead_letter::failure_id(&dead_letters[2]);

    let list = pipeline.bridgectl_ok(&["dlq", "list", "--destination", "accounting"]);
    for document_id in 7101..=7103 {
        assert!(list.contains(&format!("#{document_id}")), "{list}");
    }
    assert!(list.contains("retryable"), "{list}");
    assert!(list.contains("3 failure(s)"), "{list}");

    let failures = pipeline.failure_store().list().await.unwrap();
    let first = failures
        .iter()
        .find(|failure| failure.record.document_id == Some(7101))
        .unwrap();
    let show = pipeline.bridgectl_ok(&["dlq", "show", &first.record.failure_id]);
    assert!(show.contains("HTTP 500"), "{show}");
    assert!(show.contains("\"idempotency_key\""), "the payload is printed: {show}");
    assert!(show.contains("dispatch_failed"), "the timeline is printed: {show}");
    assert!(show.contains("dead_lettered"), "{show}");

    let dry = pipeline.bridgectl_ok(&["dlq", "redrive", "--destination", "accounting", "--dry-run"]);
    assert!(dry.contains("would send"), "{dry}");
    assert!(
        queue_is_empty(&pipeline, &accounting.url).await,
        "a dry run sends nothing"
    );

    // The sink recovers, and the redrive sends every open failure back.
    pipeline.clear_faults(&pipeline.quickbooks).await;
    let redrive = pipeline.bridgectl_ok(&["dlq", "redrive", "--destination", "accounting", "--rate", "600"]);
    assert!(redrive.contains("Sent 3 of 3"), "{redrive}");
    assert!(
        redrive.contains("deleted"),
        "the copy left in the queue was deleted: {redrive}"
    );
    let json_list = pipeline.bridgectl_ok(&["--json", "dlq", "list", "--status", "redriven"]);
    let redriven: Vec<Value> = serde_json::from_str(&json_list).unwrap();
    assert_eq!(redriven.len(), 3);
    assert!(redriven.iter().all(|record| record["redriven_at"].is_string()));
    assert!(
        queue_is_empty(&pipeline, &accounting.dead_letter_url).await,
        "no copy is left in the dead-letter queue"
    );

    pipeline
        .dispatch_accounting(&engine, async || queue_is_empty(&pipeline, &accounting.url).await)
        .await;
    let bills = pipeline.bills().await;
    assert_eq!(bills.len(), 3, "each Bill once: {bills:?}");
    let mut numbers: Vec<&str> = bills.iter().filter_map(|bill| bill["DocNumber"].as_str()).collect();
    numbers.sort();
    assert_eq!(numbers, vec!["INV-7101", "INV-7102", "INV-7103"]);

    // Running it again sends nothing.
    let again = pipeline.bridgectl_ok(&["dlq", "redrive", "--destination", "accounting"]);
    assert!(again.contains("Nothing to redrive"), "{again}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(queue_is_empty(&pipeline, &accounting.url).await);
    let stale = pipeline.failure_store().get(&stale_id).await.unwrap().unwrap();
    assert_eq!(stale.record.status, failure_status::REDRIVEN);
    let open = pipeline.bridgectl_ok(&["dlq", "list"]);
    assert!(open.contains("No open failures"), "{open}");

    let timeline = bridge_shared::ports::DocumentStore::document_view(&pipeline.documents(), 7101)
        .await
        .unwrap()
        .timeline;
    let kinds: Vec<&str> = timeline.iter().map(|entry| entry.kind.as_str()).collect();
    assert!(kinds.contains(&"redriven"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"delivered"), "{kinds:?}");
}

#[tokio::test]
async fn missing_resources_are_named() {
    let pipeline = Pipeline::create(5).await;

    let output = pipeline.bridgectl(&["dlq", "list"]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--failure-table"), "{stderr}");
    assert!(stderr.contains("FAILURE_TABLE"), "{stderr}");
    assert!(stderr.contains("--stack"), "{stderr}");

    let output = pipeline.bridgectl(&[
        "dlq",
        "show",
        "dlq-000000000000000000000000",
        "--failure-table",
        &pipeline.failure_table,
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no failure record dlq-000000000000000000000000"),
        "{stderr}"
    );

    let output = pipeline.bridgectl(&["dlq", "list", "--since", "tomorrow", "--failure-table", "x"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a duration"));

    let output = pipeline.bridgectl(&["dlq", "redrive", "--rate", "0", "--failure-table", "x"]);
    assert!(!output.status.success(), "a rate of zero is rejected");
}

#[tokio::test]
async fn stack_outputs_name_the_resources() {
    let pipeline = Pipeline::create(5).await;
    let output = pipeline.bridgectl(&["dlq", "list", "--stack", "no-such-stack"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-stack"), "{stderr}");

    // A stack whose outputs name this pipeline's tables and queues.
    let stack = bridge_tests::unique_name("bridge");
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "FailureTableName": {"Value": pipeline.failure_table},
            "DocumentTableName": {"Value": pipeline.document_table},
            "AccountingQueueUrl": {"Value": pipeline.queues["accounting"].url},
            "AccountingDeadLetterQueueUrl": {"Value": pipeline.queues["accounting"].dead_letter_url},
        }
    });
    let cloudformation = aws_sdk_cloudformation::Client::new(&pipeline.emulator.sdk_config());
    cloudformation
        .create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .send()
        .await
        .expect("create the stack");
    for _ in 0..100 {
        let described = cloudformation
            .describe_stacks()
            .stack_name(&stack)
            .send()
            .await
            .unwrap();
        let status = described.stacks()[0]
            .stack_status()
            .map(|status| status.as_str().to_owned());
        if status.as_deref() == Some("CREATE_COMPLETE") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = serde_json::to_string(&routed(9101)).unwrap();
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    let mut message = aws_lambda_events::event::sqs::SqsMessage::default();
    message.message_id = Some("from-stack".into());
    message.body = Some(body);
    message.event_source_arn = Some(pipeline.queues["accounting"].dead_letter_arn.clone());
    event.records.push(message);
    pipeline.dead_letter_app().handle(&event).await;

    let output = pipeline.bridgectl(&["dlq", "list", "--stack", &stack]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("#9101"),
        "the failure table came from the stack's outputs: {stdout}"
    );
    let output = pipeline.bridgectl(&["dlq", "redrive", "--dry-run", "--stack", &stack]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("would send"),
        "the queue came from the stack's outputs: {stdout}"
    );
}
