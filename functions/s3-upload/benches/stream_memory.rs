//! Peak memory while one large S3 object streams to RecordEngine.
//!
//! Starts MiniStack and the RecordEngine simulator on 127.0.0.1, stores an
//! object of `STREAM_BENCH_MB` MiB (default 200) in S3, then uploads it
//! through the same `Uploader::upload_object` path as the Lambda function and
//! reads this process's peak resident set size (`VmHWM`), which is reset just
//! before the upload. The simulator runs in this process and hashes the file
//! as it arrives, so the figure covers both ends of the stream.
//!
//! Run: `cargo bench -p s3-upload --bench stream_memory`. The target is a peak
//! of at most 64 MiB; the program exits with status 1 above that (override
//! with `STREAM_BENCH_LIMIT_MB`). `/usr/bin/time -v` on this program reports
//! far more, because its maximum covers MiniStack, a child process that
//! keeps the whole object in memory.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use bridge_devstack::{SimulatorConfig, start_recordengine};
use bridge_shared::aws::{DynamoDocumentStore, SecretsManagerSource, SqsQueues};
use bridge_shared::inbound::aws::{DynamoFailureLog, S3ObjectStore};
use bridge_shared::inbound::{
    Channel, ContactMapping, MappingRules, ObjectRef, UploadOutcome, Uploader, UploaderConfig,
};
use bridge_shared::recordengine::{RecordEngineClient, RecordEngineConfig};
use bridge_tests::{Emulator, unique_name};
use sha2::{Digest, Sha256};

const TOKEN: &str = "re_0123456789abcdef0123456789abcdef01234567";

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} is missing from /proc/self/status"))
}

/// Resets `VmHWM` to the current RSS (Linux 4.0 and later).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS through /proc/self/clear_refs");
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let size_mb = env_number("STREAM_BENCH_MB", 200);
    let limit_mb = env_number("STREAM_BENCH_LIMIT_MB", 64);
    let size = size_mb * 1024 * 1024;

    let emulator = Emulator::start();
    let clients = emulator.clients();
    let bucket = unique_name("bench-inbox");
    let table = unique_name("bench-documents");
    let failures = unique_name("bench-failures");
    emulator.create_bucket(&bucket).await;
    emulator.create_table(&table, true).await;
    emulator.create_table(&failures, false).await;
    let alerts_url = emulator.create_queue(&unique_name("bench-alerts")).await;
    let secret_arn = emulator.create_secret(&unique_name("bench-token"), TOKEN).await;
    let simulator = start_recordengine(SimulatorConfig {
        api_token: Some(TOKEN.into()),
        ..SimulatorConfig::default()
    })
    .await
    .expect("start the simulator");

    // The object is written to a file and streamed to S3, so the set-up does
    // not hold it in memory either.
    let path = std::env::temp_dir().join(format!("{}.bin", unique_name("stream-bench")));
    let mut digest = Sha256::new();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create the object file"));
        let mut block = vec![0u8; 1024 * 1024];
        for index in 0..size_mb {
            for (offset, byte) in block.iter_mut().enumerate() {
                *byte = (offset as u64).wrapping_mul(31).wrapping_add(index) as u8;
            }
            digest.update(&block);
            file.write_all(&block).expect("write the object file");
        }
        file.flush().expect("flush the object file");
    }
    let expected_sha256 = hex::encode(digest.finalize());
    let key = "inbox/5/12/大文件 stream bench.pdf";
    clients
        .s3
        .put_object()
        .bucket(&bucket)
        .key(key)
        .body(ByteStream::from_path(&path).await.expect("open the object file"))
        .send()
        .await
        .expect("store the object in S3");
    std::fs::remove_file(&path).ok();

    let secrets = Arc::new(SecretsManagerSource::new(clients.secrets.clone()));
    let mut config = RecordEngineConfig::new(simulator.base_url(), &secret_arn);
    config.request_timeout = Duration::from_secs(120);
    let uploader = Uploader::new(
        Arc::new(DynamoDocumentStore::new(clients.dynamodb.clone(), &table)),
        Arc::new(RecordEngineClient::new_guarded(config, secrets).expect("client")),
        Arc::new(DynamoFailureLog::new(clients.dynamodb.clone(), &failures)),
        Arc::new(SqsQueues::new(
            clients.sqs.clone(),
            BTreeMap::from([("alerts".to_owned(), alerts_url)]),
        )),
        Arc::new(MappingRules::new(ContactMapping::bundled().unwrap(), &["inbox/"])),
        UploaderConfig::default(),
    );
    let objects = S3ObjectStore::new(clients.s3.clone());
    let object = ObjectRef {
        bucket: bucket.clone(),
        key: key.into(),
        version_id: None,
        etag: None,
        size: Some(size),
        channel: Channel::S3,
    };

    let rss_before_kib = status_kib("VmRSS");
    let setup_peak_kib = status_kib("VmHWM");
    reset_peak();
    let started = Instant::now();
    let outcome = uploader.upload_object(&objects, &object, None).await;
    let elapsed = started.elapsed();
    let peak_kib = status_kib("VmHWM");

    let uploads: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(simulator.url("/_requests"))
        .send()
        .await
        .expect("read the simulator's uploads")
        .json()
        .await
        .expect("uploads JSON");
    let received = &uploads["uploads"][0];

    println!("object size:            {size_mb} MiB");
    println!("outcome:                {outcome:?}");
    println!("received size:          {}", received["size"]);
    println!(
        "received sha256 match:  {}",
        received["sha256"] == expected_sha256.as_str()
    );
    println!("peak RSS of the set-up: {:.1} MiB", setup_peak_kib as f64 / 1024.0);
    println!("RSS before upload:      {:.1} MiB", rss_before_kib as f64 / 1024.0);
    println!("peak RSS during upload: {:.1} MiB", peak_kib as f64 / 1024.0);
    println!(
        "throughput:             {:.1} MiB/s over {:.1} s",
        size_mb as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );

    let mut failed = false;
    if !matches!(outcome, UploadOutcome::Uploaded { .. }) || received["sha256"] != expected_sha256.as_str() {
        eprintln!("FAILED: the object was not uploaded intact");
        failed = true;
    }
    if peak_kib > limit_mb * 1024 {
        eprintln!(
            "FAILED: peak RSS {:.1} MiB is above the {limit_mb} MiB target",
            peak_kib as f64 / 1024.0
        );
        failed = true;
    }
    emulator.stop();
    if failed {
        std::process::exit(1);
    }
}
