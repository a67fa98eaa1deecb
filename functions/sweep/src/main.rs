//! Lambda entry point of the sweep function: wiring only. The schedule's
//! event carries nothing the sweep reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge_shared::aws::{self, Clients, DynamoDocumentStore, S3Archive, SqsQueues};
use bridge_shared::dispatch::aws::DynamoVersionedStore;
use bridge_shared::intake::{Intake, IntakeConfig};
use bridge_shared::sweep::SweepOptions;
use bridge_shared::telemetry;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sweep::config::Config;
use sweep::handler::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_tracing();

    let config = Config::from_env()?;
    let clients = Clients::new(&aws::load_config().await);
    let destinations = config.destination_queues.keys().cloned().collect();
    let rules = aws::load_rule_set(config.rules_source.as_deref(), &clients, &destinations).await?;
    tracing::info!(ruleset_version = %rules.version, window_hours = config.window_hours, "sweep configured");

    let archive = Arc::new(S3Archive::new(clients.s3.clone(), &config.archive_bucket));
    let store = Arc::new(DynamoDocumentStore::new(
        clients.dynamodb.clone(),
        &config.document_table,
    ));
    let app = Arc::new(App {
        intake: Intake {
            archive: archive.clone(),
            store: store.clone(),
            queues: Arc::new(SqsQueues::new(clients.sqs.clone(), config.destination_queues.clone())),
            rules: Arc::new(rules),
            config: IntakeConfig::default(),
        },
        listing: archive,
        table: store,
        markers: Arc::new(DynamoVersionedStore::new(
            clients.dynamodb.clone(),
            &config.document_table,
        )),
        alerts: Arc::new(SqsQueues::new(
            clients.sqs.clone(),
            BTreeMap::from([("alerts".to_owned(), config.alerts_queue_url.clone())]),
        )),
        options: SweepOptions {
            since: chrono::Duration::hours(config.window_hours),
            fix: true,
            delivery_grace: chrono::Duration::minutes(config.delivery_grace_minutes),
        },
    });

    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let app = Arc::clone(&app);
        async move {
            let summary = app.run(chrono::Utc::now()).await?;
            Ok::<_, Error>(serde_json::json!({
                "archived_scanned": summary.report.archived_scanned,
                "unrouted": summary.report.unrouted.len(),
                "still_unrouted": summary.report.still_unrouted(),
                "undelivered": summary.report.undelivered.len(),
                "alerts_sent": summary.alerts_sent,
            }))
        }
    }))
    .await
}
