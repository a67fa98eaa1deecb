//! `bridgectl upload` and `bridgectl doc` over the whole pipeline. The real
//! binary uploads a file to the RecordEngine simulator, and the simulator
//! exports it. The webhook and the accounting dispatcher run in process
//! against the emulator and the QuickBooks sink. `doc` then prints the
//! document's timeline from upload to the Bill.

mod support;

use bridge_devstack::{SimulatorConfig, start_recordengine};
use serde_json::Value;
use support::*;

const API_TOKEN: &str = "re_00112233445566778899aabbccddeeff00112233";

fn invoice() -> String {
    let path = format!(
        "{}/../../tests/fixtures/invoices/AzureInterior.pdf",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::canonicalize(path).unwrap().display().to_string()
}

// Two workers: the binary blocks one while the simulator serves requests on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doc_shows_upload_to_bill() {
    let pipeline = Pipeline::create(5).await;
    // Exports go to a port with no listener: the test hands each payload
    // from the simulator's delivery record to the webhook itself.
    let simulator = start_recordengine(SimulatorConfig {
        api_token: Some(API_TOKEN.into()),
        webhook_url: Some(format!(
            "http://127.0.0.1:{}/webhooks/recordengine",
            bridge_tests::free_port()
        )),
        export_delay: std::time::Duration::ZERO,
        ..SimulatorConfig::default()
    })
    .await
    .expect("start the RecordEngine simulator");
    let token_secret = pipeline
        .emulator
        .create_secret(&bridge_tests::unique_name("recordengine-token"), API_TOKEN)
        .await;
    let path = invoice();
    let upload_args = [
        "--json",
        "upload",
        path.as_str(),
        "--contact",
        "5",
        "--folder",
        "12",
        "--recordengine-url",
        simulator.base_url(),
        "--token-secret",
        token_secret.as_str(),
    ];

    let uploaded: Vec<Value> = serde_json::from_str(&pipeline.bridgectl_ok(&upload_args)).unwrap();
    assert_eq!(uploaded.len(), 1);
    assert_eq!(uploaded[0]["result"], "uploaded", "{uploaded:?}");
    let document_id = uploaded[0]["document_id"].as_i64().expect("a RecordEngine id");

    // The same file to the same folder is not sent again.
    let again: Vec<Value> = serde_json::from_str(&pipeline.bridgectl_ok(&upload_args)).unwrap();
    assert_eq!(again[0]["result"], "skipped", "{again:?}");
    assert!(
        again[0]["detail"].as_str().unwrap().contains("uploaded before"),
        "{again:?}"
    );

    let delivery: Value = reqwest::Client::new()
        .post(simulator.url(&format!("/_export/{document_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payload = delivery["payload"].to_string();
    let response = pipeline.webhook().handle(webhook_request(&payload)).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "{delivery}: {}",
        String::from_utf8_lossy(response.body().as_ref())
    );

    let engine = pipeline.accounting_engine();
    pipeline
        .dispatch_accounting(&engine, async || !pipeline.bills().await.is_empty())
        .await;

    let text = pipeline.bridgectl_ok(&["doc", &document_id.to_string()]);
    for expected in [
        "uploaded",
        "exported",
        "routed",
        "delivered",
        "approval-required",
        "AzureInterior.pdf",
        "Bill",
        "done",
    ] {
        assert!(text.contains(expected), "doc lacks {expected}: {text}");
    }

    let json: Value =
        serde_json::from_str(&pipeline.bridgectl_ok(&["--json", "doc", &document_id.to_string()])).unwrap();
    let kinds: Vec<&str> = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    let position = |kind: &str| kinds.iter().position(|found| *found == kind);
    assert!(position("uploaded") < position("exported"), "{kinds:?}");
    assert!(position("exported") < position("routed"), "{kinds:?}");
    assert!(position("routed") < position("delivered"), "{kinds:?}");
    assert!(position("uploaded").is_some(), "{kinds:?}");
    let routes = json["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "USD goes to accounting only: {routes:?}");
    assert_eq!(routes[0]["destination"], "accounting");
    assert_eq!(routes[0]["dispatch"]["status"], "done");

    // The correlation key in external_refs finds the same document.
    let correlation_key = json["document"]["origin"]["correlation_key"].as_str().unwrap();
    let by_key = pipeline.bridgectl_ok(&["doc", correlation_key]);
    assert!(by_key.contains(&format!("Document #{document_id}")), "{by_key}");

    let missing = pipeline.bridgectl(&["doc", "424242", "--document-table", &pipeline.document_table]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no record of RecordEngine document #424242"));
}

#[tokio::test]
async fn upload_rejects_unsupported_files() {
    let pipeline = Pipeline::create(5).await;
    let directory = tempfile::tempdir().unwrap();
    let text = directory.path().join("notes.exe");
    std::fs::write(&text, b"MZ").unwrap();
    let path = text.display().to_string();

    let mut args: Vec<String> = [
        "upload",
        path.as_str(),
        "--contact",
        "5",
        "--folder",
        "12",
        "--recordengine-url",
        "http://127.0.0.1:9",
        "--token-secret",
        "unused",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(pipeline.resource_args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = pipeline.bridgectl(&refs);

    assert_eq!(output.status.code(), Some(1), "a rejected file fails the command");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("unsupported file type"), "{stdout}");
}
