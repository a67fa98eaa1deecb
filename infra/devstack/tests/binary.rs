//! The `bridge-devstack-servers` binary: URL line on stdout, clean stop on SIGTERM.

mod common;

use std::process::Stdio;

use bridge_devstack::json::Json;
use common::{WAIT_LIMIT, client, json_body, text_at};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_bridge-devstack-servers");

#[tokio::test]
async fn binary_prints_urls_and_stops_on_sigterm() {
    let mut child = Command::new(BINARY)
        .args(["--export-delay-ms", "0", "--wecom-key", "robot-key"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();

    let line = tokio::time::timeout(WAIT_LIMIT, lines.next_line())
        .await
        .expect("no URL line within the wait limit")
        .unwrap()
        .expect("stdout closed before the URL line");
    let urls = Json::parse(&line).unwrap();

    for name in ["recordengine", "quickbooks", "xero", "hubspot", "generic", "wecom"] {
        let url = text_at(&urls, name);
        assert!(url.starts_with("http://127.0.0.1:"), "{name}: {url}");
    }
    let robot = client()
        .post(format!("{}/cgi-bin/webhook/send?key=other", text_at(&urls, "wecom")))
        .json(&serde_json::json!({"msgtype": "text", "text": {"content": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(text_at(&json_body(robot).await, "errmsg"), "invalid webhook url");
    let config = client()
        .get(format!("{}/_config", text_at(&urls, "recordengine")))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body(config).await.get("export_delay_ms"), Some(&Json::from(0_u64)));

    let pid = child.id().unwrap().to_string();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(signalled.success());
    let status = tokio::time::timeout(WAIT_LIMIT, child.wait())
        .await
        .expect("the binary did not stop after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn binary_rejects_missing_scenario_file() {
    let output = tokio::time::timeout(
        WAIT_LIMIT,
        Command::new(BINARY)
            .args(["--scenarios", "/nonexistent/devstack-scenarios.json"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the binary did not exit")
    .unwrap();

    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/devstack-scenarios.json"), "{stderr}");
}
