//! The benchmarks that live in the crates they measure: the criterion
//! per-event benches of `bridge-shared`, the webhook latency bench against
//! MiniStack and the s3-upload streaming-memory bench. Each runs as its own
//! process; this module runs it and turns its output into figures.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::figures::{Figure, percentile};
use crate::process::{build_bench, cargo, run_sampled};

/// The criterion group of `shared/benches/per_event.rs`.
pub const PER_EVENT_GROUP: &str = "per_event";

/// The per-event target for the documented payload, in microseconds.
pub const PER_EVENT_TARGET_US: f64 = 50.0;

/// The peak-RSS target while s3-upload streams the large object, in MiB.
pub const STREAM_TARGET_MIB: f64 = 64.0;

/// Maximum run time of one benchmark process.
const BENCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Runs `cargo bench -p bridge-shared --bench per_event`, then reads the estimates.
pub fn per_event(repo_root: &Path) -> Result<Vec<Figure>> {
    let status = Command::new(cargo())
        .current_dir(repo_root)
        .args(["bench", "-p", "bridge-shared", "--bench", "per_event"])
        .status()
        .context("cannot run cargo bench")?;
    if !status.success() {
        bail!("cargo bench -p bridge-shared --bench per_event failed with {status}");
    }
    criterion_figures(&repo_root.join("target").join("criterion").join(PER_EVENT_GROUP))
}

/// Figures from criterion's `<group>/<bench>/new/{estimates,sample}.json`, in µs.
pub fn criterion_figures(group_dir: &Path) -> Result<Vec<Figure>> {
    let mut names: Vec<String> = std::fs::read_dir(group_dir)
        .with_context(|| format!("cannot read {}: run the criterion benches first", group_dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("new").join("estimates.json").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();

    let mut figures = Vec::new();
    for name in names {
        let new = group_dir.join(&name).join("new");
        let estimates = read_json(&new.join("estimates.json"))?;
        let sample = read_json(&new.join("sample.json"))?;
        let median_ns = estimates["median"]["point_estimate"]
            .as_f64()
            .with_context(|| format!("{} has no median", new.join("estimates.json").display()))?;
        let per_sample = sample_means_ns(&sample);

        let mut figure = Figure::new(format!("{PER_EVENT_GROUP}.{name}"), "µs", median_ns / 1000.0)
            .with_detail("criterion median; p99 over criterion's sample means (each the mean of many iterations)");
        figure.median = Some(median_ns / 1000.0);
        figure.p99 = Some(percentile(&per_sample, 0.99) / 1000.0);
        figure.runs = Some(per_sample.len());
        if name.ends_with("_documented") || name.contains("_documented_") {
            figure.target_max = Some(PER_EVENT_TARGET_US);
        }
        figures.push(figure);
    }
    if figures.is_empty() {
        bail!("{} contains no criterion estimates", group_dir.display());
    }
    Ok(figures)
}

/// Sorted per-iteration times of each criterion sample (`times[i] / iters[i]`), in ns.
fn sample_means_ns(sample: &Value) -> Vec<f64> {
    let (Some(iters), Some(times)) = (sample["iters"].as_array(), sample["times"].as_array()) else {
        return Vec::new();
    };
    let mut means: Vec<f64> = iters
        .iter()
        .zip(times)
        .filter_map(|(iters, time)| Some(time.as_f64()? / iters.as_f64()?))
        .collect();
    means.sort_by(f64::total_cmp);
    means
}

/// Runs the webhook latency bench and reads `target/bench/webhook-latency.json`.
pub fn webhook_latency(repo_root: &Path, requests: usize) -> Result<Vec<Figure>> {
    let executable = build_bench(repo_root, "webhook", "webhook_latency")?;
    let run = run_sampled(
        Command::new(&executable)
            .current_dir(repo_root)
            .env("BENCH_REQUESTS", requests.to_string()),
        BENCH_TIMEOUT,
    )?;
    if !run.status.success() {
        bail!("{} failed with {}", executable.display(), run.status);
    }
    let latency = read_json(&repo_root.join("target").join("bench").join("webhook-latency.json"))?;
    let number = |key: &str| {
        latency[key]
            .as_f64()
            .with_context(|| format!("webhook-latency.json has no {key}"))
    };

    let mut figure = Figure::new("webhook_latency_emulator", "ms", number("median")?).with_detail(format!(
        "sequential requests, handler in process, SDK calls to MiniStack; mean {:.1} ms, max {:.1} ms",
        number("mean")?,
        number("max")?
    ));
    figure.median = Some(number("median")?);
    figure.p99 = Some(number("p99")?);
    figure.runs = latency["runs"].as_u64().map(|runs| runs as usize);
    let memory = Figure::new(
        "peak_rss.webhook_latency_bench",
        "MiB",
        run.peak_rss_kib as f64 / 1024.0,
    )
    .with_detail("the bench process (webhook handler, SDK clients, test harness); MiniStack not included");
    Ok(vec![figure, memory])
}

/// Runs the s3-upload streaming bench (`functions/s3-upload/benches/stream_memory.rs`)
/// and reads the peak RSS it prints.
pub fn stream_memory(repo_root: &Path, size_mib: u64) -> Result<Vec<Figure>> {
    let executable = build_bench(repo_root, "s3-upload", "stream_memory")?;
    let run = run_sampled(
        Command::new(&executable)
            .current_dir(repo_root)
            .env("STREAM_BENCH_MB", size_mib.to_string()),
        BENCH_TIMEOUT,
    )?;
    let peak = printed_mib(&run.stdout, "peak RSS during upload:")
        .with_context(|| format!("{} printed no peak RSS line", executable.display()))?;
    if !run.status.success() {
        eprintln!(
            "{} exited with {}: the upload failed or its peak RSS is above the target",
            executable.display(),
            run.status
        );
    }
    let mut figures = vec![
        Figure::new(format!("peak_rss.s3_upload_stream_{size_mib}mib"), "MiB", peak)
            .with_target(STREAM_TARGET_MIB)
            .with_detail(format!(
                "VmHWM reset before Uploader::upload_object streams a {size_mib} MiB S3 object to the simulator"
            )),
    ];
    if let Some(throughput) = printed_mib(&run.stdout, "throughput:") {
        figures.push(
            Figure::new("s3_upload_stream_throughput", "MiB/s", throughput)
                .with_detail("MiniStack S3 to the RecordEngine simulator, both on 127.0.0.1"),
        );
    }
    Ok(figures)
}

/// Parses the first number after `label` on a line of `output`.
fn printed_mib(output: &str, label: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_numbers_are_read() {
        let output =
            "object size: 200 MiB\npeak RSS during upload: 41.3 MiB\nthroughput:             88.0 MiB/s over 2.3 s\n";

        assert_eq!(printed_mib(output, "peak RSS during upload:"), Some(41.3));
        assert_eq!(printed_mib(output, "throughput:"), Some(88.0));
        assert_eq!(printed_mib(output, "missing:"), None);
    }

    #[test]
    fn criterion_estimates_become_microseconds() {
        let dir = std::env::temp_dir().join(format!("bridge-bench-criterion-{}", std::process::id()));
        let new = dir.join("receive_documented").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"median": {"point_estimate": 12500.0}, "mean": {"point_estimate": 13000.0}}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("sample.json"),
            r#"{"iters": [1.0, 2.0], "times": [10000.0, 30000.0]}"#,
        )
        .unwrap();

        let figures = criterion_figures(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(figures.len(), 1);
        assert_eq!(figures[0].name, "per_event.receive_documented");
        assert_eq!(figures[0].value, 12.5);
        assert_eq!(figures[0].p99, Some(15.0));
        assert_eq!(figures[0].runs, Some(2));
        assert_eq!(figures[0].target_max, Some(PER_EVENT_TARGET_US));
    }
}
