//! Cold start: from spawning a function binary to its first
//! `GET /2018-06-01/runtime/invocation/next` on a Lambda Runtime API stub on
//! 127.0.0.1. By then the function has read its configuration, built its AWS
//! clients and finished the rest of its init.
//!
//! The stub never responds, so the function stays blocked in that request
//! while its peak RSS (`VmHWM`) is read; then it is killed.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::figures::{Figure, millis};
use crate::functions::{Function, common_environment};
use crate::process::{kill, status_kib};

/// The path a Lambda runtime polls for its next event.
pub const NEXT_INVOCATION_PATH: &str = "/2018-06-01/runtime/invocation/next";

/// Maximum wait for one function's first request.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The cold-start target per function, in milliseconds.
pub const TARGET_MS: f64 = 20.0;

/// One request line that reached the stub, with the time it arrived.
struct Arrival {
    at: Instant,
    request_line: String,
    /// Kept open so that the function waits for a response instead of retrying.
    _stream: TcpStream,
}

/// A Lambda Runtime API stub: it records when each connection's first
/// request line arrives and never responds.
struct RuntimeApiStub {
    port: u16,
    arrivals: Receiver<Arrival>,
}

impl RuntimeApiStub {
    fn start() -> Result<RuntimeApiStub> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        let (sender, arrivals) = channel();
        // The thread blocks in accept until the process exits.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut request_line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let at = Instant::now();
                let arrival = Arrival {
                    at,
                    request_line: request_line.trim_end().to_owned(),
                    _stream: stream,
                };
                if sender.send(arrival).is_err() {
                    break;
                }
            }
        });
        Ok(RuntimeApiStub { port, arrivals })
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// One start of one function.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub init: Duration,
    /// CPU time of all the function's threads up to its first poll. It grows
    /// much less than `init` when other processes compete for the cores.
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

/// Sums the on-CPU time of every thread of `pid` (first field of
/// `/proc/<pid>/task/<tid>/schedstat`, in nanoseconds).
fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total_ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let schedstat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total_ns += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total_ns))
}

/// Starts `binary` with `environment` and waits for its first poll of the Runtime API.
fn start_once(stub: &RuntimeApiStub, binary: &Path, environment: &[(String, String)], log: &Path) -> Result<Start> {
    // A connection left from an earlier start would be taken for this one's.
    while stub.arrivals.try_recv().is_ok() {}

    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(environment.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);

    let spawned_at = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let deadline = spawned_at + START_TIMEOUT;
    let arrival = loop {
        match stub.arrivals.recv_timeout(Duration::from_millis(20)) {
            Ok(arrival) => break arrival,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => bail!("the Runtime API stub stopped"),
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited with {status} before polling for an event; its output is in {}",
                binary.display(),
                log.display()
            );
        }
        if Instant::now() > deadline {
            kill(&mut child);
            bail!(
                "{} did not poll for an event within {} s; its output is in {}",
                binary.display(),
                START_TIMEOUT.as_secs(),
                log.display()
            );
        }
    };
    let peak_rss_kib = status_kib(child.id(), "VmHWM").unwrap_or_default();
    let cpu = cpu_time(child.id()).unwrap_or_default();
    kill(&mut child);

    let expected = format!("GET {NEXT_INVOCATION_PATH} ");
    if !arrival.request_line.starts_with(&expected) {
        bail!(
            "{} sent {:?} first, not a poll for the next event (an init error?); its output is in {}",
            binary.display(),
            arrival.request_line,
            log.display()
        );
    }
    Ok(Start {
        init: arrival.at.saturating_duration_since(spawned_at),
        cpu,
        peak_rss_kib,
    })
}

/// Settings of [`measure`].
#[derive(Debug, Clone)]
pub struct ColdStartOptions {
    /// Holds `<binary>/bootstrap` for each function (`target/lambda`).
    pub lambda_dir: PathBuf,
    pub functions: Vec<&'static Function>,
    /// Counted starts per function; one more start before them is not counted.
    pub runs: usize,
    /// Function logs and the empty home directory go here.
    pub work_dir: PathBuf,
}

/// Measures every function; returns the cold-start and init-RSS figures.
pub fn measure(options: &ColdStartOptions) -> Result<Vec<Figure>> {
    let stub = RuntimeApiStub::start()?;
    let runtime_api = stub.address();
    // AWS calls, if any were made, would reach the stub and wait there.
    let endpoint = format!("http://{runtime_api}");
    let home = options.work_dir.join("home");
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let common = common_environment(&runtime_api, &endpoint, &home.display().to_string());

    let mut figures = Vec::new();
    for function in &options.functions {
        let binary = options.lambda_dir.join(function.binary).join("bootstrap");
        if !binary.exists() {
            bail!(
                "{} is missing: build it with `cargo lambda build --release --bin {}`",
                binary.display(),
                function.binary
            );
        }
        let mut environment = common.clone();
        environment.extend(function.environment(&endpoint));
        let log = options.work_dir.join(format!("{}.log", function.name));
        let _ = std::fs::remove_file(&log);

        let warm_up = start_once(&stub, &binary, &environment, &log)?;
        let mut starts = Vec::with_capacity(options.runs);
        for _ in 0..options.runs {
            starts.push(start_once(&stub, &binary, &environment, &log)?);
        }

        let init: Vec<f64> = starts.iter().map(|start| millis(start.init)).collect();
        let cold = Figure::timing(format!("cold_start.{}", function.name), "ms", &init)
            .with_target(TARGET_MS)
            .with_detail(format!(
                "spawn to first poll of the Runtime API; init {}; first start ({:.1} ms) not counted",
                function.init,
                millis(warm_up.init)
            ));
        let cpu: Vec<f64> = starts.iter().map(|start| millis(start.cpu)).collect();
        let cpu = Figure::timing(format!("cold_start_cpu.{}", function.name), "ms", &cpu).with_detail(
            "CPU time of all threads up to the first poll (schedstat); less sensitive to other load than wall time",
        );
        let rss: Vec<f64> = starts.iter().map(|start| start.peak_rss_kib as f64 / 1024.0).collect();
        let peak = rss.iter().copied().fold(0.0, f64::max);
        let mut memory = Figure::timing(format!("peak_rss_init.{}", function.name), "MiB", &rss)
            .with_detail("VmHWM at the first poll of the Runtime API; value is the largest over the starts");
        memory.value = peak;
        println!(
            "cold start {:<17} median {:>6.1} ms  p99 {:>6.1} ms  CPU {:>5.1} ms  peak RSS {:>5.1} MiB",
            function.name,
            cold.value,
            cold.p99.unwrap_or_default(),
            cpu.value,
            peak
        );
        figures.push(cold);
        figures.push(cpu);
        figures.push(memory);
    }
    Ok(figures)
}
