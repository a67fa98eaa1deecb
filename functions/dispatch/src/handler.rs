//! Turning the configuration into an engine, and one invocation into a batch response.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bridge_shared::aws::{Clients, DynamoDocumentStore};
use bridge_shared::dispatch::aws::{
    DynamoVersionedStore, S3ArchiveReader, SecretsManagerStore, SesMailer, SqsDispatchQueue,
};
use bridge_shared::dispatch::http::HttpClient;
use bridge_shared::dispatch::settings::{Dependencies, DestinationsFile, build_destination};
use bridge_shared::dispatch::{Engine, EngineConfig};
use tokio::time::Instant;

use crate::config::Config;

/// Builds the engine for the configured destination.
pub fn build_engine(config: &Config, clients: &Clients, destinations: &DestinationsFile) -> Result<Engine, String> {
    let settings = destinations.settings_for(&config.destination, &config.overrides)?;
    let store = Arc::new(DynamoVersionedStore::new(
        clients.dynamodb.clone(),
        &config.document_table,
    ));
    let secrets = Arc::new(SecretsManagerStore::new(clients.secrets.clone()));
    let http = HttpClient::with_guard(config.http_timeout, config.loopback_only)?;
    let destination = build_destination(
        settings,
        Dependencies {
            http,
            secrets,
            store: store.clone(),
            credentials_secret: config.credentials_secret.clone(),
            wecom_secret: config.wecom_secret.clone(),
            mailer: Some(Arc::new(SesMailer::new(clients.ses.clone()))),
            email_from: config.email_from.clone(),
            email_to: config.email_to.clone(),
            locale: config.locale,
        },
    )?;

    let mut engine_config = EngineConfig::new(&config.destination);
    engine_config.concurrency = config.concurrency.max(1);
    engine_config.deadline_margin = config.deadline_margin;
    engine_config.finish_reserve = (config.deadline_margin / 2).max(Duration::from_millis(500));
    engine_config.max_attempts = config.max_attempts.max(1);

    Ok(Engine {
        config: engine_config,
        destination,
        store,
        documents: Arc::new(DynamoDocumentStore::new(
            clients.dynamodb.clone(),
            &config.document_table,
        )),
        archive: Arc::new(S3ArchiveReader::new(clients.s3.clone())),
        queue: Arc::new(SqsDispatchQueue::new(
            clients.sqs.clone(),
            &config.queue_url,
            &config.dead_letter_queue_url,
        )),
    })
}

/// Converts Lambda's deadline (epoch milliseconds) to an instant on the tokio clock.
pub fn deadline_instant(deadline_epoch_ms: u64) -> Instant {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    Instant::now() + Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms))
}

/// Handles one invocation: every record gets an outcome, and only the ones
/// to keep on the queue are reported as failures.
pub async fn handle(engine: &Engine, event: &SqsEvent, deadline_epoch_ms: u64) -> SqsBatchResponse {
    let report = engine.handle(event, deadline_instant(deadline_epoch_ms)).await;
    let response = report.response();
    tracing::info!(
        records = event.records.len(),
        failed = response.batch_item_failures.len(),
        destination = %engine.config.destination,
        "batch handled"
    );
    response
}
