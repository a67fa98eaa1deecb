//! `bridgectl sweep` after a webhook returned 503: the report names the
//! unrouted export, `--fix` routes it, and a second run finds nothing.

mod support;

use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn sweep_reports_then_fixes_an_unrouted_export() {
    let pipeline = Pipeline::create(5).await;
    let accounting = pipeline.queues["accounting"].url.clone();
    pipeline
        .clients
        .sqs
        .delete_queue()
        .queue_url(&accounting)
        .send()
        .await
        .unwrap();
    let mut payload: Value = serde_json::from_str(DOCUMENTED).unwrap();
    payload["id"] = json!(8101);
    payload["extracted_fields"]["currency"] = json!("USD");
    let response = pipeline
        .webhook()
        .handle(webhook_request(&payload.to_string()))
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "the accounting queue is gone");
    pipeline.emulator.create_queue(queue_name(&accounting)).await;

    let mut args = vec!["sweep".to_owned(), "--since".to_owned(), "1d".to_owned()];
    args.extend(pipeline.resource_args());
    let output = pipeline.bridgectl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        output.status.code(),
        Some(2),
        "exit code 2: something is still unrouted"
    );
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(report.contains("#8101"), "{report}");
    assert!(report.contains("pass --fix to route"), "{report}");
    assert!(
        pipeline.emulator.drain_queue(&accounting).await.is_empty(),
        "a report-only sweep sends nothing"
    );

    let fixed = pipeline.bridgectl_ok(&["sweep", "--since", "1d", "--fix"]);
    assert!(fixed.contains("accepted: accounting"), "{fixed}");
    let routed = pipeline.emulator.drain_queue(&accounting).await;
    assert_eq!(routed.len(), 1);

    let again: Value =
        serde_json::from_str(&pipeline.bridgectl_ok(&["--json", "sweep", "--since", "1d", "--fix"])).unwrap();
    assert_eq!(again["unrouted"], json!([]), "{again}");
    assert!(
        pipeline.emulator.drain_queue(&accounting).await.is_empty(),
        "routed once"
    );
}

/// Returns the queue name at the end of a queue URL.
fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}
