//! A 200 MiB upload streams through the simulator without being held in memory.
//!
//! This test has its own binary, so the process's peak memory (`VmHWM`) reflects this upload alone.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use bridge_devstack::json::Json;
use bridge_devstack::{SimulatorConfig, start_recordengine};
use bytes::Bytes;
use common::{BOUNDARY, at, client, json_body, multipart_content_type, text_at};
use sha2::{Digest, Sha256};

const FILE_SIZE: usize = 200 * 1024 * 1024;
const CHUNK_SIZE: usize = 1024 * 1024;
/// Allowed growth of peak resident memory during the upload. The client and
/// the server share this process, so both sides' buffers count.
const MAX_PEAK_GROWTH_BYTES: u64 = 64 * 1024 * 1024;

/// Peak resident set size of this process in bytes, from `/proc/self/status`.
fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Builds eight distinct chunks. Chunk `i` of the file is `patterns[i % 8]`, shared rather than copied.
fn chunk_patterns() -> Vec<Bytes> {
    (0..8_u8)
        .map(|seed| {
            let pattern: Vec<u8> = (0..CHUNK_SIZE)
                .map(|offset| seed.wrapping_mul(31).wrapping_add(offset as u8).wrapping_mul(7))
                .collect();
            Bytes::from(pattern)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_200_mib_streams() {
    let server = start_recordengine(SimulatorConfig {
        export_delay: Duration::ZERO,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();

    let patterns = chunk_patterns();
    let chunk = move |index: usize| patterns[index % patterns.len()].clone();
    let mut expected = Sha256::new();
    for index in 0..FILE_SIZE / CHUNK_SIZE {
        expected.update(chunk(index));
    }
    let expected = hex::encode(expected.finalize());

    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"contact_id\"\r\n\r\n5\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"folder_id\"\r\n\r\n12\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"large-scan.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let chunks = (0..FILE_SIZE / CHUNK_SIZE).map(chunk);
    let parts = std::iter::once(Bytes::from(head))
        .chain(chunks)
        .chain(std::iter::once(Bytes::from(tail)))
        .map(Ok::<Bytes, std::io::Error>);
    let body = reqwest::Body::wrap_stream(futures::stream::iter(parts));

    let before = peak_resident_bytes();
    // Generous because other builds may share the two cores; the upload normally takes seconds.
    let response = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
        .post(server.url("/api/documents/upload"))
        .bearer_auth("token")
        .header("content-type", multipart_content_type())
        .body(body)
        .send()
        .await
        .unwrap();
    let after = peak_resident_bytes();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text_at(&json_body(response).await, "filename"), "large-scan.pdf");
    let uploads = json_body(client().get(server.url("/_requests")).send().await.unwrap()).await;
    assert_eq!(at(&uploads, "uploads.0.size"), &Json::from(FILE_SIZE as u64));
    assert_eq!(text_at(&uploads, "uploads.0.sha256"), expected);
    assert!(
        after.saturating_sub(before) < MAX_PEAK_GROWTH_BYTES,
        "peak memory grew by {} bytes during the upload",
        after - before
    );
}
