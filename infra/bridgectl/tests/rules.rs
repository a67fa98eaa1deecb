//! `bridgectl rules check` as an operator runs it: the real binary, offline,
//! on RecordEngine's documented example payload and on bad input.

use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    format!(
        "{}/../../tests/fixtures/recordengine/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs bridgectl with no AWS configuration at all: the check must not need it.
fn bridgectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bridgectl"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("run bridgectl")
}

#[test]
fn documented_payload_routes_to_accounting() {
    let output = bridgectl(&["rules", "check", &fixture("document-exported.json")]);

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let accounting = stdout
        .lines()
        .find(|line| line.contains("│ accounting "))
        .unwrap_or_else(|| panic!("no accounting route: {stdout}"));
    assert!(accounting.contains("approval-required"), "{accounting}");
    assert!(stdout.contains("nothing was sent"), "{stdout}");
    assert!(stdout.contains("Document #847"), "{stdout}");
}

#[test]
fn json_output_lists_every_rule() {
    let output = bridgectl(&[
        "--json",
        "rules",
        "check",
        &fixture("document-exported-no-envelope.json"),
    ]);

    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let routes = report["decision"]["routes"].as_array().unwrap();
    assert!(
        routes
            .iter()
            .any(|route| route["destination"] == "accounting" && route["rule"] == "approval-required"),
        "{routes:?}"
    );
    assert_eq!(report["rules"].as_array().unwrap().len(), 6);
    assert_eq!(report["rules"][0]["name"], "low-confidence");
    assert_eq!(report["rules"][0]["result"], "not matched");
}

#[test]
fn custom_rules_and_bad_input_are_reported() {
    let directory = tempfile::tempdir().unwrap();
    let rules = directory.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "version: \"t1\"\nrules:\n  - name: everything-to-crm\n    route: [crm]\n",
    )
    .unwrap();
    let output = bridgectl(&[
        "rules",
        "check",
        &fixture("document-exported.json"),
        "--rules",
        rules.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("everything-to-crm"), "{stdout}");
    assert!(!stdout.contains("│ accounting "), "{stdout}");

    let missing = bridgectl(&["rules", "check", "/nonexistent/payload.json"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/payload.json"));

    let garbage = directory.path().join("garbage.json");
    std::fs::write(&garbage, "{").unwrap();
    let unreadable = bridgectl(&["rules", "check", garbage.to_str().unwrap()]);
    assert!(!unreadable.status.success());
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("not a readable webhook payload"));

    let bad_rules = directory.path().join("bad.yaml");
    std::fs::write(&bad_rules, "version: \"t\"\nrules:\n  - name: x\n    route: [erp]\n").unwrap();
    let rejected = bridgectl(&[
        "rules",
        "check",
        &fixture("document-exported.json"),
        "--rules",
        bad_rules.to_str().unwrap(),
    ]);
    assert!(!rejected.status.success());
    assert!(String::from_utf8_lossy(&rejected.stderr).contains("erp"));
}
