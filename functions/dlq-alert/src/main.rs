//! Lambda entry point of the dead-letter function: wiring only.
//!
//! It takes two kinds of event: SQS batches from the dead-letter queues, and
//! the flush schedule's event (anything without `Records`), which sends the
//! alerts waiting in a digest once its window ends.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use bridge_shared::aws::{self, Clients, DynamoDocumentStore};
use bridge_shared::dispatch::alert_channels::EmailChannel;
use bridge_shared::dispatch::aws::{DynamoVersionedStore, SecretsManagerStore, SesMailer};
use bridge_shared::dispatch::http::HttpClient;
use bridge_shared::dispatch::wecom::WeComRobot;
use bridge_shared::telemetry;
use dlq_alert::channels::Channels;
use dlq_alert::config::Config;
use dlq_alert::failure_store::DynamoFailureStore;
use dlq_alert::handler::App;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_tracing();

    let config = Config::from_env()?;
    let clients = Clients::new(&aws::load_config().await);
    let versioned = Arc::new(DynamoVersionedStore::new(
        clients.dynamodb.clone(),
        &config.document_table,
    ));
    let http = HttpClient::new(config.http_timeout)?;
    let wecom = config.wecom_secret.as_deref().map(|secret| {
        Arc::new(WeComRobot::new(
            &config.wecom_base_url,
            http.clone(),
            Arc::new(SecretsManagerStore::new(clients.secrets.clone())),
            secret,
        ))
    });
    let email = match (&config.email_from, config.email_to.is_empty()) {
        (Some(from), false) => Some(EmailChannel {
            mailer: Arc::new(SesMailer::new(clients.ses.clone())),
            from: from.clone(),
            to: config.email_to.clone(),
        }),
        _ => None,
    };
    tracing::info!(wecom = wecom.is_some(), email = email.is_some(), locale = ?config.handler.locale,
        dead_letter_queues = config.handler.queues.dead_letter_queues.len(), "dead-letter function configured");

    let app = Arc::new(App {
        failures: Arc::new(DynamoFailureStore::new(clients.dynamodb.clone(), &config.failure_table)),
        versioned: versioned.clone(),
        documents: Arc::new(DynamoDocumentStore::new(
            clients.dynamodb.clone(),
            &config.document_table,
        )),
        sender: Arc::new(Channels {
            wecom,
            email,
            budgets: versioned,
        }),
        config: config.handler.clone(),
    });

    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let app = Arc::clone(&app);
        async move {
            if event.payload.get("Records").is_some() {
                let batch: SqsEvent = serde_json::from_value(event.payload)?;
                let report = app.handle(&batch).await;
                Ok::<_, Error>(serde_json::to_value(report.response())?)
            } else {
                let report = app.flush().await;
                Ok(serde_json::to_value(report)?)
            }
        }
    }))
    .await
}
