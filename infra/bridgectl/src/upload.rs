//! `bridgectl upload <paths…> --contact C --folder F`: manual and backfill
//! uploads through the shared uploader, with the same claim, deduplication,
//! records, failure records and alerts as S3 drops. Uploading the same file
//! to the same contact and folder twice sends it once.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bridge_shared::aws::{DynamoDocumentStore, SecretsManagerSource, SqsQueues};
use bridge_shared::inbound::aws::DynamoFailureLog;
use bridge_shared::inbound::uploader::ALERTS_DESTINATION;
use bridge_shared::inbound::{
    ContactMapping, MappingRules, Target, UploadOutcome, Uploader, UploaderConfig, upload_local_files,
};
use bridge_shared::recordengine::{RecordEngineClient, RecordEngineConfig};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::age::cut;
use crate::output::{Format, print_json, table};
use crate::resources::StackArgs;

#[derive(Debug, Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Files to upload: pdf, jpg, jpeg, png, docx, xlsx, csv, txt, html, mp3, wav or m4a.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// RecordEngine contact id the documents belong to.
    #[arg(long, value_name = "ID")]
    pub contact: i64,
    /// RecordEngine folder id the documents go into.
    #[arg(long, value_name = "ID")]
    pub folder: i64,
    /// RecordEngine extraction profile id [default: the folder's profile].
    #[arg(long = "profile-id", value_name = "ID")]
    pub profile_id: Option<i64>,
    /// Base URL of the RecordEngine instance; overrides the stack's RecordEngineBaseUrl parameter.
    #[arg(long, value_name = "URL", env = "RECORDENGINE_BASE_URL")]
    pub recordengine_url: Option<String>,
    /// Secrets Manager secret (ARN or name) holding the RecordEngine API token; overrides the
    /// stack's RecordEngineApiTokenSecretArn output.
    #[arg(long, value_name = "ARN", env = "RECORDENGINE_TOKEN_SECRET_ARN")]
    pub token_secret: Option<String>,
}

/// The outcome of one file.
#[derive(Debug, Serialize)]
struct FileResult {
    path: String,
    /// `uploaded`, `skipped` or `failed`.
    result: &'static str,
    document_id: Option<i64>,
    detail: String,
}

fn describe(outcome: &UploadOutcome) -> (Option<i64>, String) {
    match outcome {
        UploadOutcome::Uploaded {
            document_id,
            correlation_key,
            found_by_lookup,
        } => (
            Some(*document_id),
            if *found_by_lookup {
                format!("found in RecordEngine after an earlier upload of unknown outcome ({correlation_key})")
            } else {
                format!("uploaded ({correlation_key})")
            },
        ),
        UploadOutcome::AlreadyUploaded {
            document_id,
            correlation_key,
        } => (
            *document_id,
            format!("uploaded before; nothing sent ({correlation_key})"),
        ),
        UploadOutcome::Skipped { reason } => (None, reason.clone()),
        UploadOutcome::Rejected { reason, .. } => (None, reason.clone()),
        UploadOutcome::Failed {
            error_class,
            error,
            failure_id,
        } => (
            None,
            format!(
                "{error_class}: {error}{}",
                failure_id
                    .as_ref()
                    .map(|id| format!(" (failure {id})"))
                    .unwrap_or_default()
            ),
        ),
        UploadOutcome::Retry { error, .. } => (None, format!("not uploaded, run the command again later: {error}")),
        UploadOutcome::InProgress { after } => (
            None,
            format!(
                "another upload of this file is running; try again in {} s",
                after.as_secs()
            ),
        ),
        UploadOutcome::LeftForOperator {
            reason,
            correlation_key,
            ..
        } => (
            None,
            format!("outcome unknown; look up {correlation_key} in RecordEngine before uploading again: {reason}"),
        ),
    }
}

/// Runs `upload`; returns the exit code: 0 when every file is in RecordEngine.
pub async fn run(args: UploadArgs, format: Format) -> Result<i32> {
    let resources = args.stack.resolve().await?;
    let document_table = resources.document_table()?.to_owned();
    let failure_table = resources.failure_table()?.to_owned();
    let alerts_queue = resources.queue(ALERTS_DESTINATION)?.to_owned();
    let base_url = args
        .recordengine_url
        .clone()
        .or_else(|| resources.parameters.get("RecordEngineBaseUrl").cloned())
        .filter(|url| !url.trim().is_empty())
        .context(
            "the RecordEngine URL is not known: pass --recordengine-url, set RECORDENGINE_BASE_URL, \
             or pass --stack NAME to read the stack's RecordEngineBaseUrl parameter",
        )?;
    let token_secret = args
        .token_secret
        .clone()
        .or_else(|| resources.outputs.get("RecordEngineApiTokenSecretArn").cloned())
        .context(
            "the RecordEngine token secret is not known: pass --token-secret, set RECORDENGINE_TOKEN_SECRET_ARN, \
             or pass --stack NAME to read the stack's RecordEngineApiTokenSecretArn output",
        )?;
    for path in &args.paths {
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
    }

    let clients = &resources.clients;
    let secrets = Arc::new(SecretsManagerSource::new(clients.secrets.clone()));
    let recordengine = RecordEngineClient::new(RecordEngineConfig::new(base_url, token_secret), secrets)
        .map_err(|error| anyhow::anyhow!("the RecordEngine client could not be built: {error}"))?;
    let mapping = ContactMapping::bundled().map_err(|error| anyhow::anyhow!("{error}"))?;
    let uploader = Uploader::new(
        Arc::new(DynamoDocumentStore::new(clients.dynamodb.clone(), &document_table)),
        Arc::new(recordengine),
        Arc::new(DynamoFailureLog::new(clients.dynamodb.clone(), &failure_table)),
        Arc::new(SqsQueues::new(
            clients.sqs.clone(),
            [(ALERTS_DESTINATION.to_owned(), alerts_queue)].into(),
        )),
        Arc::new(MappingRules::new(mapping, &[])),
        UploaderConfig {
            recorded_by: "bridgectl".into(),
            tag_objects: false,
            ..UploaderConfig::default()
        },
    );
    let target = Target {
        contact_id: args.contact,
        folder_id: args.folder,
        profile_id: args.profile_id,
        resolved_by: "bridgectl upload --contact/--folder".into(),
    };

    let progress = if format == Format::Json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(args.paths.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let mut results = Vec::new();
    for path in &args.paths {
        progress.set_message(path.display().to_string());
        let uploads = upload_local_files(&uploader, std::slice::from_ref(path), &target, None).await;
        for upload in uploads {
            let (document_id, detail) = describe(&upload.outcome);
            results.push(FileResult {
                path: upload.path.display().to_string(),
                result: upload.outcome.category(),
                document_id,
                detail,
            });
        }
        progress.inc(1);
    }
    progress.finish_and_clear();

    if format == Format::Json {
        print_json(&results);
    } else {
        let rows = results
            .iter()
            .map(|result| {
                vec![
                    result.path.clone(),
                    result.result.to_owned(),
                    result
                        .document_id
                        .map(|id| format!("#{id}"))
                        .unwrap_or_else(|| "-".into()),
                    cut(&result.detail, 80),
                ]
            })
            .collect();
        println!("{}", table(&["FILE", "RESULT", "DOCUMENT", "DETAIL"], rows));
    }
    let failed = results.iter().any(|result| result.result == "failed");
    Ok(if failed { 1 } else { 0 })
}
