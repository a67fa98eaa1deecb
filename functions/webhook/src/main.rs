//! Lambda entry point of the webhook function: wiring only.

use std::sync::Arc;

use bridge_shared::auth::TokenVerifier;
use bridge_shared::aws::{self, Clients, DynamoDocumentStore, S3Archive, SecretsManagerSource, SqsQueues};
use bridge_shared::intake::{Intake, IntakeConfig};
use bridge_shared::recordengine::RecordEngineClient;
use bridge_shared::telemetry;
use lambda_http::{Error, Request, service_fn};
use webhook::config::Config;
use webhook::handler::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_tracing();

    // Configuration and rules fail here, at init, naming what is wrong.
    let config = Config::from_env()?;
    let clients = Clients::new(&aws::load_config().await);
    let destinations = config.destination_queues.keys().cloned().collect();
    let rules = aws::load_rule_set(config.rules_source.as_deref(), &clients, &destinations).await?;
    tracing::info!(ruleset_version = %rules.version, rules = rules.rules.len(), "routing rules loaded");

    let intake = Intake {
        archive: Arc::new(S3Archive::new(clients.s3.clone(), &config.archive_bucket)),
        store: Arc::new(DynamoDocumentStore::new(
            clients.dynamodb.clone(),
            &config.document_table,
        )),
        queues: Arc::new(SqsQueues::new(clients.sqs.clone(), config.destination_queues.clone())),
        rules: Arc::new(rules),
        config: IntakeConfig {
            max_body_bytes: config.max_body_bytes,
            ..IntakeConfig::default()
        },
    };
    let verifier = TokenVerifier::new(
        Arc::new(SecretsManagerSource::new(clients.secrets.clone())),
        &config.token_secret_arn,
    );
    let mut app = App::new(intake, verifier, config.auth_mode);
    if let Some(settings) = config.recordengine.clone() {
        let secrets = Arc::new(SecretsManagerSource::new(clients.secrets.clone()));
        let client_config = settings.load(secrets.as_ref()).await?;
        app = app.with_recordengine(Arc::new(RecordEngineClient::new(client_config, secrets)?));
    }
    let app = Arc::new(app);

    lambda_http::run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { app.handle(request).await }
    }))
    .await
}
