//! One sweep run logs one summary line.
//!
//! The test installs a global log subscriber, so it stays alone in this test
//! binary: a subscriber set per thread misses lines whose call sites another
//! test thread registered first.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bridge_shared::fakes::{FakeArchive, FakeQueues, FakeStore};
use bridge_shared::intake::{Intake, IntakeConfig};
use bridge_shared::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
use bridge_shared::sweep::SweepOptions;
use chrono::{DateTime, Duration, Utc};
use sweep::handler::App;

const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");

/// A log writer that appends to a shared buffer.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn app() -> App<FakeArchive, FakeStore, FakeQueues> {
    let destinations: BTreeSet<String> = DEFAULT_DESTINATIONS.iter().map(|name| name.to_string()).collect();
    let archive = Arc::new(FakeArchive::default());
    let store = Arc::new(FakeStore::default());
    let queues = Arc::new(FakeQueues::default());
    App {
        intake: Intake {
            archive: archive.clone(),
            store: store.clone(),
            queues: queues.clone(),
            rules: Arc::new(RuleSet::from_yaml(BUNDLED_RULES, "bundled", &destinations).unwrap()),
            config: IntakeConfig::default(),
        },
        listing: archive,
        table: store.clone(),
        markers: store,
        alerts: queues,
        options: SweepOptions {
            since: Duration::hours(48),
            fix: true,
            delivery_grace: Duration::minutes(30),
        },
    }
}

#[tokio::test]
async fn run_logs_one_summary() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let now: DateTime<Utc> = "2026-12-04T08:00:00Z".parse().unwrap();
    let app = app();
    app.intake.receive(DOCUMENTED.as_bytes(), now).await.unwrap();

    app.run(now + Duration::hours(1)).await.unwrap();

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let summaries: Vec<&str> = text.lines().filter(|line| line.contains("sweep summary")).collect();
    assert_eq!(summaries.len(), 1, "{text}");
    assert!(summaries[0].contains("fix=true"), "{text}");
    assert!(summaries[0].contains("undelivered=2"), "{text}");
    assert!(!text.contains("sweep finished"), "{text}");
}
