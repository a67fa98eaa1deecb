//! `bridgectl … | head`: a reader that closes stdout early ends bridgectl
//! quietly, without a panic message or backtrace.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits two levels below the repository root")
        .to_path_buf()
}

/// Runs bridgectl with stdout connected to a pipe whose read end is already
/// closed, so the first write fails with EPIPE; returns the exit code and stderr.
fn run_with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("create a pipe");
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridgectl"))
        .args(args)
        .current_dir(repo_root())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bridgectl");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait for bridgectl");
    (status.code(), stderr)
}

#[test]
fn closed_stdout_exits_quietly() {
    let payload = "tests/fixtures/recordengine/document-exported.json";
    for args in [&["rules", "check", payload][..], &["--json", "rules", "check", payload]] {
        let (code, stderr) = run_with_closed_stdout(args);

        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert!(
            !stderr.contains("Broken pipe"),
            "{args:?} reported the closed pipe: {stderr}"
        );
        assert_eq!(code, Some(141), "{args:?} exit code; stderr: {stderr}");
    }
}

#[test]
fn other_errors_still_reported() {
    // A missing payload is an ordinary error: bridgectl reports it on stderr
    // and exits 1 before it prints anything, so the closed stdout plays no part.
    let (code, stderr) = run_with_closed_stdout(&["rules", "check", "no-such-payload.json"]);

    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot read the payload"), "{stderr}");
}
