//! Every operator subcommand parses its arguments and documents its options.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bridgectl"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .arg("--help")
        .output()
        .expect("run bridgectl");
    assert!(
        output.status.success(),
        "bridgectl {} --help failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn operator_subcommands_have_help() {
    for args in [
        &["dlq", "list"][..],
        &["dlq", "show"],
        &["dlq", "redrive"],
        &["doc"],
        &["rules", "check"],
        &["upload"],
        &["sweep"],
    ] {
        let text = help(args);
        assert!(text.contains("Usage: bridgectl"), "{args:?}: {text}");
    }
}

#[test]
fn options_name_their_units_and_sources() {
    let redrive = help(&["dlq", "redrive"]);
    assert!(redrive.contains("per minute"), "{redrive}");
    assert!(redrive.contains("--dry-run"), "{redrive}");
    assert!(redrive.contains("--stack"), "{redrive}");
    assert!(redrive.contains("BRIDGE_STACK"), "{redrive}");
    assert!(redrive.contains("--profile"), "{redrive}");
    assert!(redrive.contains("AWS_ENDPOINT_URL"), "{redrive}");

    let list = help(&["dlq", "list"]);
    assert!(list.contains("s, m, h, d or w"), "{list}");

    let upload = help(&["upload"]);
    assert!(upload.contains("--profile-id"), "{upload}");
    assert!(upload.contains("RECORDENGINE_TOKEN_SECRET_ARN"), "{upload}");
}
