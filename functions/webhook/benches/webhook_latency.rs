//! Webhook handler latency against the MiniStack emulator: the handler runs
//! in this process and makes its real SDK calls (S3 PutObject, DynamoDB
//! claim and bookkeeping, SQS SendMessage) to the emulator on 127.0.0.1.
//!
//! `cargo bench -p webhook --bench webhook_latency` sends `BENCH_REQUESTS`
//! (default 1,000, at most 10,000) sequential exports, each a new document,
//! prints the percentiles and writes them to `target/bench/webhook-latency.json`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bridge_shared::auth::AuthMode;
use bridge_tests::Emulator;
use serde_json::{Value, json};
use support::{DOCUMENTED, Stack, bearer, http_api_event, send};

const MAX_REQUESTS: usize = 10_000;

fn export(id: usize) -> String {
    let mut root: Value = serde_json::from_str(DOCUMENTED).expect("documented payload");
    root["id"] = json!(100_000 + id);
    root["extracted_fields"]["currency"] = json!("USD");
    root.to_string()
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000)
        .clamp(1, MAX_REQUESTS);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let emulator: &'static Emulator = Box::leak(Box::new(Emulator::start()));

    let samples = runtime.block_on(async {
        let stack = Stack::create(emulator).await;
        let app = stack.app(AuthMode::Bearer);

        // Warm-up: the first requests fetch the token and open connections.
        for id in 0..20 {
            let request = http_api_event(
                "/webhooks/recordengine",
                Some(&bearer()),
                export(MAX_REQUESTS + id).as_bytes(),
                false,
            );
            send(&app, request).await;
        }

        let mut samples = Vec::with_capacity(requests);
        for id in 0..requests {
            let request = http_api_event("/webhooks/recordengine", Some(&bearer()), export(id).as_bytes(), false);
            let started = Instant::now();
            let (status, body) = send(&app, request).await;
            samples.push(started.elapsed());
            assert_eq!(status, 200, "request {id}: {body}");
        }
        samples
    });
    emulator.stop();

    let mut sorted = samples.clone();
    sorted.sort();
    let total: Duration = samples.iter().sum();
    let report = json!({
        "name": "webhook_latency_emulator",
        "unit": "ms",
        "runs": requests,
        "median": millis(percentile(&sorted, 0.5)),
        "p99": millis(percentile(&sorted, 0.99)),
        "mean": millis(total / requests as u32),
        "max": millis(*sorted.last().expect("at least one sample")),
    });

    println!(
        "webhook latency over {requests} sequential requests against MiniStack: p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms, max {:.1} ms",
        report["median"].as_f64().unwrap_or_default(),
        report["p99"].as_f64().unwrap_or_default(),
        report["mean"].as_f64().unwrap_or_default(),
        report["max"].as_f64().unwrap_or_default(),
    );

    let directory = bridge_tests::repo_root().join("target/bench");
    std::fs::create_dir_all(&directory).expect("create target/bench");
    std::fs::write(directory.join("webhook-latency.json"), format!("{report:#}\n")).expect("write the report");
}
