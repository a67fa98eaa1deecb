//! `bridgectl dev up` as a user runs it: the refusal of a URL that leaves
//! 127.0.0.1 before anything starts, and a clean stop on Ctrl-C that leaves
//! no process and no temporary file behind.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bridgectl::dev::Endpoints;
use bridgectl::dev::endpoints::RunRecord;
use bridgectl::dev::process::{group_is_running, processes_in_group};

/// How long `dev up` may take: `sam build` of out-of-date release binaries takes minutes.
const START_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// How long `dev up` may take to stop after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits two levels below the repository root")
        .to_path_buf()
}

/// Returns an empty state directory under `target/devstack/tests` for one test.
fn state_dir(name: &str) -> PathBuf {
    let dir = repo_root()
        .join("target")
        .join("devstack")
        .join("tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn bridgectl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command.args(args).current_dir(repo_root());
    command
}

/// Waits for a child with a deadline; kills it if the deadline passes.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for bridgectl") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bridgectl did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// Sends a JSON `POST` with a bearer token over plain HTTP and returns the raw response.
fn post(url: &str, token: &str, body: &[u8]) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(authority).expect("connect to the webhook");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the webhook response");
    response
}

fn is_listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

#[test]
fn up_rejects_real_destination() {
    let state = state_dir("refusal");
    let state_arg = state.display().to_string();

    let output = bridgectl(&[
        "dev",
        "up",
        "--state-dir",
        &state_arg,
        "--parameter",
        // 192.0.2.1 is a documentation address (RFC 5737): should the check ever
        // let it through, no real service is at the other end.
        "AccountingBaseUrl=https://192.0.2.1",
    ])
    .stdin(Stdio::null())
    .output()
    .expect("run bridgectl");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("parameter AccountingBaseUrl"), "{stderr}");
    assert!(stderr.contains("host 192.0.2.1"), "{stderr}");
    assert!(!stderr.contains("sam build"), "it got as far as the build: {stderr}");
    assert!(!state.join("run.json").exists());
    assert!(!state.join("ministack").exists());
    assert!(!state.join("logs").exists());
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn up_rejects_undeclared_parameter() {
    let state = state_dir("undeclared");
    let state_arg = state.display().to_string();

    let output = bridgectl(&[
        "dev",
        "up",
        "--state-dir",
        &state_arg,
        "--parameter",
        "NoSuchParameter=1",
    ])
    .stdin(Stdio::null())
    .output()
    .expect("run bridgectl");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("NoSuchParameter not declared"), "{stderr}");
    assert!(!state.join("ministack").exists());
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn fire_without_stack_says_how_to_start() {
    let state = state_dir("no-stack");
    let state_arg = state.display().to_string();

    let output = bridgectl(&["dev", "fire", "ScheduledUploadFunction", "--state-dir", &state_arg])
        .output()
        .expect("run bridgectl");
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success());
    assert!(stderr.contains("no local stack is running"), "{stderr}");
    assert!(stderr.contains("bridgectl dev up"), "{stderr}");
}

#[test]
fn interrupt_leaves_nothing_behind() {
    let state = state_dir("interrupt");
    let state_arg = state.display().to_string();
    let mut child = bridgectl(&["--json", "dev", "up", "--state-dir", &state_arg])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start bridgectl dev up");

    let endpoints_file = state.join("endpoints.json");
    let deadline = Instant::now() + START_TIMEOUT;
    while !endpoints_file.exists() {
        if let Some(status) = child.try_wait().expect("poll bridgectl") {
            panic!("bridgectl dev up exited with {status} before writing endpoints.json");
        }
        assert!(Instant::now() < deadline, "no endpoints.json within {START_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let endpoints = Endpoints::read(&endpoints_file).expect("endpoints.json");
    let record = RunRecord::read(&state.join("run.json")).expect("run.json");
    let emulator_tmp = record.emulator_dir.join("tmp");

    // A webhook request makes MiniStack start the webhook function, so that
    // the stop must also end a function process.
    let fixture = std::fs::read(repo_root().join("tests/fixtures/recordengine/document-exported.json")).unwrap();
    let response = post(&endpoints.webhook_url, &endpoints.webhook_token, &fixture);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // The scheduled upload runs with its schedule's payload; the inbox is empty.
    let fired = bridgectl(&[
        "--json",
        "dev",
        "fire",
        "ScheduledUploadFunction",
        "--state-dir",
        &state_arg,
    ])
    .output()
    .expect("run bridgectl dev fire");
    let fired_stdout = String::from_utf8_lossy(&fired.stdout);
    assert!(
        fired.status.success(),
        "{fired_stdout}{}",
        String::from_utf8_lossy(&fired.stderr)
    );
    let fired: serde_json::Value = serde_json::from_str(&fired_stdout).expect("dev fire --json prints JSON");
    assert_eq!(
        fired["payload"],
        r#"{"source": "recordengine-bridge.scheduled-upload"}"#
    );
    assert_eq!(fired["invocation"]["status_code"], 200, "{fired}");
    assert!(
        fired["invocation"]["response"]
            .as_str()
            .unwrap_or_default()
            .contains("\"uploaded\": 0"),
        "{fired}"
    );

    let group = processes_in_group(record.emulator_pid);
    assert!(group.len() >= 2, "expected MiniStack and a function process: {group:?}");
    assert!(emulator_tmp.exists());

    let server_ports: Vec<u16> = endpoints
        .sinks
        .values()
        .chain([&endpoints.recordengine_url, &endpoints.aws_endpoint_url])
        .map(|url| port_of(url))
        .collect();
    // SAFETY: sends SIGINT to the bridgectl child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = wait_with_timeout(&mut child, STOP_TIMEOUT);

    assert!(status.success(), "bridgectl exited with {status}");
    assert!(
        !group_is_running(record.emulator_pid),
        "left running: {:?}",
        processes_in_group(record.emulator_pid)
    );
    assert!(!emulator_tmp.exists(), "MiniStack's temporary files are still there");
    assert!(!endpoints_file.exists());
    assert!(!state.join("run.json").exists());
    for port in server_ports {
        assert!(!is_listening(port), "port {port} still accepts connections");
    }
    let _ = std::fs::remove_dir_all(&state);
}
