//! `bridge-bench`: the benchmarks behind `make bench`.
//!
//! Each step writes its figures to `target/bench/<step>.figures.json`;
//! `report` merges the steps that ran into `target/bench/report.json` and
//! prints a table. `all` runs every step and then `report`. The function
//! binaries must be built first (`cargo lambda build --release`), as the
//! Makefile does. No step fails on a time: a missed target shows in the
//! report, not in the exit status.

mod burst;
mod cold_start;
mod figures;
mod functions;
mod process;
mod report;
mod size;
mod suites;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::figures::BenchDir;

#[derive(Parser)]
#[command(
    name = "bridge-bench",
    about = "Measure recordengine-bridge: cold start, per-event cost, latency, memory, size, burst"
)]
struct Cli {
    /// The repository root [default: the current directory].
    #[arg(long, value_name = "DIR", global = true)]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    command: Step,
}

#[derive(Subcommand)]
enum Step {
    /// Runs every step below, then `report`; a failed step is reported and the rest still run.
    All(AllArgs),
    /// Cold start and init peak RSS of each function binary, against a Runtime API stub.
    ColdStart {
        #[command(flatten)]
        args: ColdStartArgs,
        #[command(flatten)]
        selection: Selection,
    },
    /// Size of each function binary, bare and zipped as SAM packages it.
    Size {
        #[command(flatten)]
        selection: Selection,
    },
    /// Per-event CPU cost in process with fakes (criterion, `shared/benches/per_event.rs`).
    PerEvent,
    /// Webhook latency against MiniStack (`functions/webhook/benches/webhook_latency.rs`).
    WebhookLatency(LatencyArgs),
    /// Peak RSS while s3-upload streams a large object (`functions/s3-upload/benches/stream_memory.rs`).
    StreamMemory(StreamArgs),
    /// Concurrent webhooks against the deployed local stack; counts lost and duplicated bills.
    Burst(BurstArgs),
    /// Merges the figures of every step that ran into target/bench/report.json and prints a table.
    Report,
}

#[derive(Args, Clone)]
struct AllArgs {
    #[command(flatten)]
    cold_start: ColdStartArgs,
    #[command(flatten)]
    latency: LatencyArgs,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    burst: BurstArgs,
    /// Leaves out the burst step.
    #[arg(long)]
    skip_burst: bool,
}

#[derive(Args, Clone)]
struct ColdStartArgs {
    /// Counted starts per function (one uncounted start precedes them).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    runs: u16,
}

/// Selection of the binaries a cold-start or size run measures, for comparing builds.
#[derive(Args, Clone, Default)]
struct Selection {
    /// Directory with `<binary>/bootstrap` per function [default: target/lambda].
    #[arg(long, value_name = "DIR")]
    lambda_dir: Option<PathBuf>,
    /// Measures only this function (webhook, dispatch, s3-upload, …); repeat for several.
    #[arg(long = "function", value_name = "NAME")]
    functions: Vec<String>,
    /// Writes the figures to `<step>-<LABEL>.figures.json`, which `report` leaves out.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
}

impl Selection {
    fn lambda_dir(&self, repo_root: &Path) -> PathBuf {
        self.lambda_dir
            .clone()
            .unwrap_or_else(|| repo_root.join("target").join("lambda"))
    }

    fn step_name(&self, step: &str) -> String {
        match &self.label {
            Some(label) => format!("{step}-{label}"),
            None => step.to_owned(),
        }
    }
}

#[derive(Args, Clone)]
struct LatencyArgs {
    /// Sequential webhook requests (the bench caps them at 10,000).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    latency_requests: usize,
}

#[derive(Args, Clone)]
struct StreamArgs {
    /// Size of the streamed S3 object, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 200)]
    stream_mib: u64,
}

#[derive(Args, Clone)]
struct BurstArgs {
    /// Webhook requests in the burst.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    burst_requests: u32,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    burst_concurrency: u32,
    /// endpoints.json of a local stack that is already running; without it the burst starts one with
    /// `bridgectl dev up` and stops it afterwards.
    #[arg(long, value_name = "FILE")]
    endpoints: Option<PathBuf>,
    /// Seconds to wait for `bridgectl dev up`, its `sam build` included.
    #[arg(long, value_name = "SECONDS", default_value_t = 1200)]
    start_timeout: u64,
    /// Seconds to wait for the bills after the last request.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    settle_timeout: u64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let repo_root = match cli.repo {
        Some(path) => path,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let bench_dir = BenchDir::new(&repo_root);

    match cli.command {
        Step::All(args) => {
            report::clear(&bench_dir);
            let mut failed = Vec::new();
            let mut record = |name: &'static str, result: Result<()>| {
                if let Err(error) = result {
                    eprintln!("bridge-bench: step {name} failed: {error:#}");
                    failed.push(name);
                }
            };
            let all_functions = Selection::default();
            println!("== size");
            record("size", size_step(&repo_root, &bench_dir, &all_functions));
            println!("== cold start");
            record(
                "cold-start",
                cold_start_step(&repo_root, &bench_dir, &args.cold_start, &all_functions),
            );
            println!("== per-event cost");
            record("per-event", per_event_step(&repo_root, &bench_dir));
            println!("== webhook latency");
            record("webhook-latency", latency_step(&repo_root, &bench_dir, &args.latency));
            println!("== s3-upload streaming memory");
            record("stream-memory", stream_step(&repo_root, &bench_dir, &args.stream));
            if !args.skip_burst {
                println!("== burst");
                record("burst", burst_step(&repo_root, &bench_dir, &args.burst));
            }
            report::write(&bench_dir)?;
            if !failed.is_empty() {
                anyhow::bail!(
                    "these steps failed and are missing from the report: {}",
                    failed.join(", ")
                );
            }
            Ok(())
        }
        Step::ColdStart { args, selection } => cold_start_step(&repo_root, &bench_dir, &args, &selection),
        Step::Size { selection } => size_step(&repo_root, &bench_dir, &selection),
        Step::PerEvent => per_event_step(&repo_root, &bench_dir),
        Step::WebhookLatency(args) => latency_step(&repo_root, &bench_dir, &args),
        Step::StreamMemory(args) => stream_step(&repo_root, &bench_dir, &args),
        Step::Burst(args) => burst_step(&repo_root, &bench_dir, &args),
        Step::Report => report::write(&bench_dir),
    }
}

fn cold_start_step(repo_root: &Path, bench_dir: &BenchDir, args: &ColdStartArgs, selection: &Selection) -> Result<()> {
    let figures = cold_start::measure(&cold_start::ColdStartOptions {
        lambda_dir: selection.lambda_dir(repo_root),
        functions: functions::select(&selection.functions)?,
        runs: usize::from(args.runs),
        work_dir: bench_dir.dir.join("cold-start"),
    })?;
    bench_dir.write_step(&selection.step_name("cold-start"), &figures)
}

fn size_step(repo_root: &Path, bench_dir: &BenchDir, selection: &Selection) -> Result<()> {
    let figures = size::measure(&size::SizeOptions {
        lambda_dir: selection.lambda_dir(repo_root),
        functions: functions::select(&selection.functions)?,
        sam_python: venv_dir(repo_root).join("sam").join("bin").join("python"),
        work_dir: bench_dir.dir.join("zip"),
    })?;
    bench_dir.write_step(&selection.step_name("size"), &figures)
}

fn per_event_step(repo_root: &Path, bench_dir: &BenchDir) -> Result<()> {
    let figures = suites::per_event(repo_root)?;
    bench_dir.write_step("per-event", &figures)
}

fn latency_step(repo_root: &Path, bench_dir: &BenchDir, args: &LatencyArgs) -> Result<()> {
    let figures = suites::webhook_latency(repo_root, args.latency_requests)?;
    bench_dir.write_step("webhook-latency", &figures)
}

fn stream_step(repo_root: &Path, bench_dir: &BenchDir, args: &StreamArgs) -> Result<()> {
    let figures = suites::stream_memory(repo_root, args.stream_mib)?;
    bench_dir.write_step("stream-memory", &figures)
}

fn burst_step(repo_root: &Path, bench_dir: &BenchDir, args: &BurstArgs) -> Result<()> {
    let figures = burst::run(&burst::BurstOptions {
        requests: args.burst_requests as usize,
        concurrency: args.burst_concurrency as usize,
        endpoints: args.endpoints.clone(),
        repo_root: repo_root.to_path_buf(),
        state_dir: bench_dir.dir.join("devstack"),
        start_timeout: Duration::from_secs(args.start_timeout),
        settle_timeout: Duration::from_secs(args.settle_timeout),
    })?;
    bench_dir.write_step("burst", &figures)
}

/// Returns `$BRIDGE_VENV`, else `.venv` in the repository, as `make venv` creates it.
fn venv_dir(repo_root: &Path) -> PathBuf {
    std::env::var_os("BRIDGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root.join(".venv"))
}
