//! Child processes: running a command while sampling its peak resident set
//! size, and finding the executables `cargo bench` builds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How often [`run_sampled`] reads `VmHWM`.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Reads a field of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`), or
/// returns `None` once the process is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Result of [`run_sampled`].
#[derive(Debug)]
pub struct SampledRun {
    pub status: ExitStatus,
    /// The last `VmHWM` read before the process exited, in KiB. The process
    /// may have grown in the last [`SAMPLE_INTERVAL`] before it exited.
    pub peak_rss_kib: u64,
    /// Standard output, which is also echoed to this process's output.
    pub stdout: String,
}

/// Runs `command` to its end, echoing and keeping its standard output, and
/// samples its peak RSS every 100 ms. The peak covers this process only,
/// not its children (such as the MiniStack emulator a benchmark starts).
/// The process is killed after `timeout`.
pub fn run_sampled(command: &mut Command, timeout: Duration) -> Result<SampledRun> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let pid = child.id();
    let stdout = child.stdout.take().context("the child has no standard output")?;
    let reader = std::thread::spawn(move || {
        let mut captured = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            captured.push_str(&line);
            captured.push('\n');
        }
        captured
    });

    let mut peak_rss_kib = 0;
    let status = loop {
        if let Some(peak) = status_kib(pid, "VmHWM") {
            peak_rss_kib = peak_rss_kib.max(peak);
        }
        if let Some(status) = child.try_wait().context("cannot wait for the benchmark")? {
            break status;
        }
        if started.elapsed() > timeout {
            kill(&mut child);
            bail!(
                "{command:?} did not finish within {} s and was killed",
                timeout.as_secs()
            );
        }
        std::thread::sleep(SAMPLE_INTERVAL);
    };
    let stdout = reader.join().unwrap_or_default();
    Ok(SampledRun {
        status,
        peak_rss_kib,
        stdout,
    })
}

pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Builds one benchmark target with `cargo bench --no-run` and returns its executable.
pub fn build_bench(repo_root: &Path, package: &str, bench: &str) -> Result<PathBuf> {
    let output = Command::new(cargo())
        .current_dir(repo_root)
        .args([
            "bench",
            "--no-run",
            "--message-format=json",
            "-p",
            package,
            "--bench",
            bench,
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo bench --no-run")?;
    if !output.status.success() {
        bail!(
            "cargo bench --no-run -p {package} --bench {bench} failed with {}",
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    executable_of(&stdout, bench)
        .with_context(|| format!("cargo bench --no-run -p {package} reported no executable for the bench {bench}"))
}

/// Finds the executable of bench target `bench` in cargo's JSON messages.
fn executable_of(messages: &str, bench: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == bench)
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bench"))
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
}

/// Returns the cargo that runs this program (`$CARGO` under `cargo run`), else `cargo`.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_of_bench_target() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"webhook","kind":["lib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"webhook_latency","kind":["bench"]},"executable":"/t/release/deps/webhook_latency-1"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");

        assert_eq!(
            executable_of(&messages, "webhook_latency"),
            Some(PathBuf::from("/t/release/deps/webhook_latency-1"))
        );
        assert_eq!(executable_of(&messages, "other"), None);
    }

    #[test]
    fn status_of_this_process() {
        let peak = status_kib(std::process::id(), "VmHWM").unwrap();

        assert!(peak > 0);
        assert_eq!(status_kib(std::process::id(), "NoSuchField"), None);
    }
}
