//! `bridgectl dev demo` (`make demo`): the main job on the bundled invoices,
//! start to finish, on the local stack.
//!
//! The demo deploys the stack as `bridgectl dev up` does and makes the
//! HubSpot sink return 503 with `Retry-After: 1`. It drops every invoice into
//! the inbox bucket. Three go under `scheduled/`, and the demo uploads them by
//! invoking the scheduled upload function with its schedule's payload. Then it
//! waits until each export is routed and each route is delivered or
//! dead-lettered.
//!
//! The one document routed to the CRM goes through its retries into the
//! dead-letter queue and an alert. The demo then clears the fault, runs
//! `bridgectl dlq redrive` for it, and waits for the delivery.
//!
//! It passes only when every document reached the destinations the bundled
//! rules give it exactly once (counted at the sinks), every bundled rule
//! fired, and the faulted delivery was recorded, alerted, redriven and
//! delivered once. Once every stage has finished it writes
//! `target/demo/report.json`, passed or not. A stage that times out ends the
//! run with an error and no report. Either way it stops everything it started.

pub mod admin;
pub mod plan;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_s3::primitives::ByteStream;
use bridge_shared::aws::{Clients, DynamoDocumentStore};
use bridge_shared::dispatch::aws::DynamoVersionedStore;
use bridge_shared::dispatch::record::{DispatchRecord, dispatch_status};
use bridge_shared::dispatch::store::get_dispatch;
use bridge_shared::failures::FailureRecord;
use bridge_shared::message::idempotency_key;
use bridge_shared::payload::{WebhookEvent, parse_webhook};
use bridge_shared::ports::DocumentStore;
use bridge_shared::records::{ExportRecord, export_status};
use bridge_shared::rules::{BUNDLED_RULES, DEFAULT_DESTINATIONS, RuleSet};
use clap::Args;
use dlq_alert::failure_store::{DynamoFailureStore, FailureStore, alert_state};

use crate::dev::schedule::invoke;
use crate::dev::wiring::{LocalServer, server_of_kind};
use crate::dev::{Endpoints, LocalStack, StackOptions};
use crate::dlq::{RedriveArgs, destination_kinds, redrive_with};
use crate::output::{Format, print_json, table};
use crate::progress::Progress;
use crate::resources::StackArgs;
use admin::{AdminClient, Fault, SinkRequest, WeComMessage};
use plan::{Channel, PlannedDrop, plan_drops};
use report::{DemoReport, DlqResult, DocumentResult, RouteResult, count_rules, document_rows, problems};

/// The stack name the demo deploys, apart from `dev up`'s so that both can run at once.
pub const DEMO_STACK_NAME: &str = "recordengine-bridge-demo";

/// The destination whose sink fails until the demo redrives.
const FAULTED_DESTINATION: &str = "crm";

/// Maximum number of requests the fault applies to. The demo clears it long before.
const FAULT_TIMES: u64 = 1000;

/// Minimum number of documents a demo run drops.
const MINIMUM_DOCUMENTS: usize = 10;

/// Time for late duplicates to show up at the sinks before they are counted.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Directory of the documents to drop [default: tests/fixtures/invoices in the repository].
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<PathBuf>,
    /// Directory of the demo stack's state and logs [default: target/demo/stack in the repository].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Path of the JSON report [default: target/demo/report.json in the repository].
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Maximum wait for each stage (uploads, routing, delivery, redrive), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 150)]
    pub wait: u64,
}

/// Settings of [`run_demo`].
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Settings of the local stack the demo starts.
    pub stack: StackOptions,
    pub fixtures: PathBuf,
    /// Maximum wait for each stage.
    pub wait: Duration,
}

impl DemoOptions {
    /// Defaults for the repository at `repo_root`: the bundled invoices and a
    /// stack of its own under `target/demo/stack`.
    pub fn new(repo_root: impl Into<PathBuf>) -> DemoOptions {
        let repo_root = repo_root.into();
        let mut stack = StackOptions::new(&repo_root);
        stack.state_dir = repo_root.join("target").join("demo").join("stack");
        stack.stack_name = DEMO_STACK_NAME.to_owned();
        // The demo fires the scheduled upload itself; a tick at 08:00 during a run would race it.
        stack.fire_schedules = false;
        DemoOptions {
            fixtures: repo_root.join("tests").join("fixtures").join("invoices"),
            wait: Duration::from_secs(150),
            stack,
        }
    }
}

/// Runs `bridgectl dev demo`: prints the documents table and writes the
/// report; exits 0 only when the demo passed.
pub async fn run(args: DemoArgs, format: Format) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let repo_root = StackOptions::find_repo_root(&cwd)?;
    let mut options = DemoOptions::new(&repo_root);
    if let Some(dir) = args.fixtures {
        options.fixtures = cwd.join(dir);
    }
    if let Some(dir) = args.state_dir {
        options.stack.state_dir = cwd.join(dir);
    }
    options.wait = Duration::from_secs(args.wait.max(1));
    let report_file = args
        .report
        .map(|file| cwd.join(file))
        .unwrap_or_else(|| repo_root.join("target").join("demo").join("report.json"));

    let report = run_demo(options).await?;

    if let Some(dir) = report_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&report).context("cannot serialize the report")?;
    std::fs::write(&report_file, text + "\n").with_context(|| format!("cannot write {}", report_file.display()))?;

    match format {
        Format::Json => print_json(&report),
        Format::Table => print_report(&report, report_file.strip_prefix(&cwd).unwrap_or(&report_file)),
    }
    Ok(if report.ok { 0 } else { 1 })
}

fn print_report(report: &DemoReport, report_file: &std::path::Path) {
    println!(
        "{}",
        table(
            &["FILE", "RECORDENGINE ID", "ROUTES", "RESULT PER DESTINATION"],
            document_rows(&report.documents)
        )
    );
    let rules = report
        .rules_fired
        .iter()
        .map(|(rule, count)| vec![rule.clone(), count.to_string()])
        .collect();
    println!("{}", table(&["RULE", "DOCUMENTS"], rules));
    let dlq = &report.dlq;
    println!(
        "Dead-letter path: {} ({}) failed at {} after {} deliveries ({} faulted requests), {}; alert {}; redrive {}; delivered {} time(s) afterwards.",
        dlq.file.as_deref().unwrap_or("-"),
        dlq.document_id.map(|id| format!("#{id}")).unwrap_or_else(|| "-".into()),
        dlq.destination,
        dlq.attempts
            .map(|count| count.to_string())
            .unwrap_or_else(|| "?".into()),
        dlq.faulted_requests,
        dlq.failure_id.as_deref().unwrap_or("no failure record"),
        if dlq.alerted { "sent" } else { "missing" },
        if dlq.redriven { "sent" } else { "not sent" },
        dlq.delivered_after_redrive
    );
    println!("Report: {} ({} s)", report_file.display(), report.seconds);
    if report.ok {
        println!(
            "Every document reached its destinations exactly once; every rule fired; the faulted delivery was redriven."
        );
    } else {
        println!("The demo failed:");
        for problem in &report.problems {
            println!("  - {problem}");
        }
    }
}

/// Starts a local stack, runs the demo on it, stops it, and returns the report.
pub async fn run_demo(options: DemoOptions) -> Result<DemoReport> {
    let started = Instant::now();
    let plan = plan_drops(&options.fixtures)?;
    let progress = options.stack.progress.clone();
    let stack = LocalStack::start(options.stack.clone()).await?;

    let outcome = tokio::select! {
        outcome = drive(&stack, &plan, options.wait, &progress) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };

    progress.step("stopping the local stack");
    let stopped = stack.stop().await;
    progress.finish();
    let mut report = outcome?;
    stopped.context("the local stack did not stop cleanly")?;
    report.seconds = started.elapsed().as_secs();
    Ok(report)
}

/// The resources of the stack that the demo reads.
struct Demo<'a> {
    endpoints: &'a Endpoints,
    admin: AdminClient,
    clients: Clients,
    documents: DynamoDocumentStore,
    dispatches: DynamoVersionedStore,
    failures: DynamoFailureStore,
    rules: RuleSet,
    /// Destination name to kind (`quickbooks`, `http_json`, …).
    kinds: BTreeMap<String, &'static str>,
    wait: Duration,
}

/// An uploaded document and its routed export.
struct Routed {
    drop: PlannedDrop,
    id: i64,
    export: ExportRecord,
    expected_routes: Vec<String>,
}

async fn drive(stack: &LocalStack, plan: &[PlannedDrop], wait: Duration, progress: &Progress) -> Result<DemoReport> {
    let endpoints = stack.endpoints();
    let output = |name: &str| {
        endpoints
            .outputs
            .get(name)
            .cloned()
            .with_context(|| format!("stack {} has no {name} output", endpoints.stack_name))
    };
    let destinations: BTreeSet<String> = DEFAULT_DESTINATIONS.iter().map(|name| name.to_string()).collect();
    let clients = Clients::new_guarded(&stack.sdk_config());
    let demo = Demo {
        endpoints,
        admin: AdminClient::new()?,
        documents: DynamoDocumentStore::new(clients.dynamodb.clone(), output("DocumentTableName")?),
        dispatches: DynamoVersionedStore::new(clients.dynamodb.clone(), output("DocumentTableName")?),
        failures: DynamoFailureStore::new(clients.dynamodb.clone(), output("FailureTableName")?),
        rules: RuleSet::from_yaml(BUNDLED_RULES, "bundled infra/routing-rules.yaml", &destinations)?,
        kinds: destination_kinds(None)?,
        clients,
        wait,
    };
    let hubspot = demo.sink("hubspot")?;

    progress.step(format!(
        "injecting a fault: the HubSpot sink returns 503 with Retry-After: 1 (POST {hubspot}/_faults)"
    ));
    let fault = Fault {
        status: 503,
        retry_after: Some("1".into()),
        times: FAULT_TIMES,
    };
    demo.admin.add_fault(hubspot, &fault).await?;

    let bucket = output("InboxBucketName")?;
    progress.step(format!("dropping {} documents into s3://{bucket}", plan.len()));
    for drop in plan {
        demo.put(&bucket, drop).await?;
        progress.note(format!("{} → s3://{bucket}/{}", drop.name, drop.key));
    }

    let scheduled = plan.iter().filter(|drop| drop.channel == Channel::Scheduled).count();
    if scheduled > 0 {
        progress.step(format!(
            "firing the 08:00 scheduled upload for the {scheduled} files under scheduled/ \
             (what `bridgectl dev fire ScheduledUploadFunction` does)"
        ));
        fire_scheduled_upload(stack, &output("ScheduledUploadFunctionName")?).await?;
    }

    progress.step(format!("waiting for RecordEngine to receive {} uploads", plan.len()));
    let ids = demo.wait_for_uploads(plan).await?;

    progress.step("waiting for each document.exported webhook to be routed");
    let routed = demo.wait_for_routing(plan, &ids).await?;
    let faulted = routed
        .iter()
        .find(|document| document.export.routes.iter().any(|route| route == FAULTED_DESTINATION))
        .with_context(|| {
            format!("no document was routed to {FAULTED_DESTINATION}, so the fault cannot show the dead-letter path")
        })?;

    progress.step(format!(
        "waiting for the deliveries, and for #{} to reach the {FAULTED_DESTINATION} dead-letter queue",
        faulted.id
    ));
    let failure = demo.wait_for_dead_letter(&routed, faulted).await?;
    progress.note(format!(
        "failure {} ({}, {} deliveries): {}",
        failure.failure_id, failure.error_class, failure.attempts, failure.error
    ));
    let alerted = demo.wait_for_alert(&failure.failure_id).await;

    progress.step(format!(
        "clearing the fault and redriving: bridgectl dlq redrive --destination {FAULTED_DESTINATION} --id {}",
        failure.failure_id
    ));
    demo.admin.clear_faults(hubspot).await?;
    let redrive = RedriveArgs {
        stack: StackArgs {
            stack: Some(endpoints.stack_name.clone()),
            ..StackArgs::default()
        },
        destination: Some(FAULTED_DESTINATION.to_owned()),
        error_class: None,
        since: chrono::Duration::hours(1),
        ids: vec![failure.failure_id.clone()],
        rate: None,
        destinations: None,
        dry_run: false,
    };
    let resources = redrive.stack.resolve_with(stack.sdk_config()).await?;
    let redrive_exit = redrive_with(redrive, resources, Format::Table).await?;
    let redriven = redrive_exit == 0
        && demo
            .failures
            .get(&failure.failure_id)
            .await?
            .is_some_and(|stored| stored.record.redriven_at.is_some());

    progress.step(format!("waiting for #{} to reach {FAULTED_DESTINATION}", faulted.id));
    demo.wait_for_dispatch(faulted, FAULTED_DESTINATION).await?;

    progress.step("counting what each sink received");
    tokio::time::sleep(SETTLE).await;
    let received = demo.received().await?;
    let documents = demo.results(&routed, plan, &received).await?;
    let mut found = unexpected_requests(&routed, &demo.kinds, &received);

    let dlq = DlqResult {
        destination: FAULTED_DESTINATION.to_owned(),
        fault: format!("HTTP 503 with Retry-After: 1 from the HubSpot sink, up to {FAULT_TIMES} requests"),
        file: Some(faulted.drop.name.clone()),
        document_id: Some(faulted.id),
        failure_id: Some(failure.failure_id.clone()),
        error_class: Some(failure.error_class.clone()),
        attempts: Some(failure.attempts),
        error: Some(failure.error.clone()),
        faulted_requests: received
            .hubspot
            .iter()
            .filter(|request| request.fault_status.is_some())
            .count(),
        alerted,
        redriven,
        delivered_after_redrive: hubspot_updates(&received.hubspot, faulted.id),
    };
    let rule_names: Vec<String> = demo.rules.rules.iter().map(|rule| rule.name.clone()).collect();
    let rules_fired = count_rules(&rule_names, &documents);
    let mut all = problems(&documents, &rules_fired, &dlq, MINIMUM_DOCUMENTS);
    all.append(&mut found);

    Ok(DemoReport {
        ok: all.is_empty(),
        stack_name: endpoints.stack_name.clone(),
        ruleset_version: demo.rules.version.clone(),
        seconds: 0,
        documents,
        rules_fired,
        dlq,
        problems: all,
    })
}

/// Invokes the scheduled upload function with its schedule's payload.
async fn fire_scheduled_upload(stack: &LocalStack, function_name: &str) -> Result<()> {
    let schedule = stack
        .schedules()
        .iter()
        .find(|schedule| schedule.function_name == function_name)
        .with_context(|| format!("no schedule of the stack invokes {function_name}"))?;
    let payload = schedule.payload(chrono::Utc::now())?;
    let invocation = invoke(stack.clients(), function_name, &payload).await?;
    if invocation.status_code != 200 || invocation.function_error.is_some() {
        bail!(
            "{function_name} failed ({}, {}): {}\n{}",
            invocation.status_code,
            invocation.function_error.as_deref().unwrap_or("no function error"),
            invocation.response,
            invocation.log_tail.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// Requests and messages the sinks received, read once after the run.
struct Received {
    quickbooks: Vec<SinkRequest>,
    xero: Vec<SinkRequest>,
    generic: Vec<SinkRequest>,
    hubspot: Vec<SinkRequest>,
    wecom: Vec<WeComMessage>,
}

impl Demo<'_> {
    fn sink(&self, name: &str) -> Result<&str> {
        self.endpoints
            .sinks
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("the local stack has no {name} sink"))
    }

    async fn put(&self, bucket: &str, drop: &PlannedDrop) -> Result<()> {
        let body = ByteStream::from_path(&drop.file)
            .await
            .with_context(|| format!("cannot read {}", drop.file.display()))?;
        let mut request = self.clients.s3.put_object().bucket(bucket).key(&drop.key).body(body);
        for (name, value) in &drop.metadata {
            request = request.metadata(name, value);
        }
        request
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("{}", bridge_shared::aws::sdk_error_text(&error)))
            .with_context(|| format!("PutObject s3://{bucket}/{} failed", drop.key))?;
        Ok(())
    }

    /// Polls `probe` every second until it returns `Ok(Ok(value))`; on timeout
    /// the error names what the last probe was still waiting for.
    async fn poll<T, F, Fut>(&self, what: &str, mut probe: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Result<T, String>>>,
    {
        let deadline = Instant::now() + self.wait;
        loop {
            let waiting_for = match probe().await? {
                Ok(value) => return Ok(value),
                Err(waiting_for) => waiting_for,
            };
            if Instant::now() >= deadline {
                bail!(
                    "{what}: still waiting after {} s for {waiting_for}",
                    self.wait.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Returns the RecordEngine id of each dropped key, once every one has one.
    async fn wait_for_uploads(&self, plan: &[PlannedDrop]) -> Result<BTreeMap<String, i64>> {
        let recordengine = self.endpoints.recordengine_url.clone();
        self.poll("uploads", || async {
            let uploads = self.admin.uploads(&recordengine).await?;
            let ids: BTreeMap<String, i64> = uploads
                .iter()
                .filter_map(|upload| Some((upload.s3_key()?, upload.id?)))
                .collect();
            let missing: Vec<&str> = plan
                .iter()
                .filter(|drop| !ids.contains_key(&drop.key))
                .map(|drop| drop.key.as_str())
                .collect();
            if missing.is_empty() {
                Ok(Ok(ids))
            } else {
                Ok(Err(format!("uploads of {}", missing.join(", "))))
            }
        })
        .await
    }

    /// Returns each document's routed export and the routes the bundled rules
    /// give for the payload the simulator sent.
    async fn wait_for_routing(&self, plan: &[PlannedDrop], ids: &BTreeMap<String, i64>) -> Result<Vec<Routed>> {
        let recordengine = self.endpoints.recordengine_url.clone();
        let exports = self
            .poll("webhook deliveries", || async {
                let exports = self.admin.exports(&recordengine).await?;
                let sent: BTreeSet<i64> = exports
                    .iter()
                    .filter(|export| export.status_code == Some(200))
                    .map(|export| export.id)
                    .collect();
                let missing: Vec<String> = ids
                    .values()
                    .filter(|id| !sent.contains(id))
                    .map(|id| format!("#{id}"))
                    .collect();
                if missing.is_empty() {
                    Ok(Ok(exports))
                } else {
                    Ok(Err(format!(
                        "an accepted document.exported webhook for {}",
                        missing.join(", ")
                    )))
                }
            })
            .await?;

        let mut routed = Vec::new();
        for drop in plan {
            let id = ids[&drop.key];
            let payload = exports
                .iter()
                .rev()
                .find(|export| export.id == id && export.status_code == Some(200))
                .map(|export| export.payload.to_string())
                .unwrap_or_default();
            let document = match parse_webhook(payload.as_bytes())
                .with_context(|| format!("the simulator's export of #{id} is not a readable payload"))?
            {
                WebhookEvent::Export(document) => document,
                WebhookEvent::Other { event } => {
                    bail!("the simulator sent #{id} as {event:?}, not document.exported")
                }
            };
            let mut expected_routes: Vec<String> = self
                .rules
                .decide(&document)
                .destinations()
                .into_iter()
                .map(str::to_owned)
                .collect();
            expected_routes.sort();

            let export = self
                .poll(&format!("routing of #{id}"), || async {
                    let view = self
                        .documents
                        .document_view(id)
                        .await
                        .with_context(|| format!("cannot read document #{id}"))?;
                    match view
                        .exports
                        .into_iter()
                        .find(|export| export.status != export_status::ROUTING)
                    {
                        Some(export) => Ok(Ok(export)),
                        None => Ok(Err(format!("a routed export of #{id} in the document table"))),
                    }
                })
                .await?;
            routed.push(Routed {
                drop: drop.clone(),
                id,
                export,
                expected_routes,
            });
        }
        Ok(routed)
    }

    async fn dispatch(&self, document: &Routed, destination: &str) -> Result<Option<DispatchRecord>> {
        let key = idempotency_key(document.id, &document.export.fingerprint, destination);
        get_dispatch(&self.dispatches, &key)
            .await
            .with_context(|| format!("cannot read the {destination} dispatch record of #{}", document.id))
    }

    /// Waits until every route except the faulted one is delivered or has
    /// failed for good, and the faulted one has a failure record.
    async fn wait_for_dead_letter(&self, routed: &[Routed], faulted: &Routed) -> Result<FailureRecord> {
        self.poll("deliveries", || async {
            let mut pending = Vec::new();
            for document in routed {
                for destination in &document.export.routes {
                    if document.id == faulted.id && destination == FAULTED_DESTINATION {
                        continue;
                    }
                    let status = self.dispatch(document, destination).await?.map(|record| record.status);
                    if !matches!(status.as_deref(), Some(dispatch_status::DONE | dispatch_status::FAILED)) {
                        pending.push(format!("#{} to {destination}", document.id));
                    }
                }
            }
            let failure = self
                .failures
                .list()
                .await
                .context("cannot read the failure table")?
                .into_iter()
                .map(|stored| stored.record)
                .find(|record| record.destination == FAULTED_DESTINATION && record.document_id == Some(faulted.id));
            match failure {
                Some(failure) if pending.is_empty() => Ok(Ok(failure)),
                Some(_) => Ok(Err(pending.join(", "))),
                None => {
                    pending.push(format!("a failure record of #{} at {FAULTED_DESTINATION}", faulted.id));
                    Ok(Err(pending.join(", ")))
                }
            }
        })
        .await
    }

    /// Returns whether the dead-letter function marked the failure alerted.
    async fn wait_for_alert(&self, failure_id: &str) -> bool {
        let alerted = self
            .poll("the failure alert", || async {
                let state = self
                    .failures
                    .get(failure_id)
                    .await
                    .context("cannot read the failure table")?
                    .and_then(|stored| stored.alert_state);
                if state.as_deref() == Some(alert_state::SENT) {
                    Ok(Ok(()))
                } else {
                    Ok(Err(format!("an alert naming {failure_id}")))
                }
            })
            .await;
        alerted.is_ok()
    }

    async fn wait_for_dispatch(&self, document: &Routed, destination: &str) -> Result<()> {
        self.poll(&format!("the redriven delivery of #{}", document.id), || async {
            match self.dispatch(document, destination).await? {
                Some(record) if record.status == dispatch_status::DONE => Ok(Ok(())),
                Some(record) if record.status == dispatch_status::FAILED => bail!(
                    "the redriven delivery of #{} to {destination} failed: {}",
                    document.id,
                    record.last_error.unwrap_or_default()
                ),
                _ => Ok(Err(format!("#{} to {destination} to be done", document.id))),
            }
        })
        .await
    }

    async fn received(&self) -> Result<Received> {
        Ok(Received {
            quickbooks: self.admin.requests(self.sink("quickbooks")?).await?,
            xero: self.admin.requests(self.sink("xero")?).await?,
            generic: self.admin.requests(self.sink("generic")?).await?,
            hubspot: self.admin.requests(self.sink("hubspot")?).await?,
            wecom: self.admin.wecom_messages(self.sink("wecom")?).await?,
        })
    }

    /// Builds each document's result, in the order of the plan.
    async fn results(
        &self,
        routed: &[Routed],
        plan: &[PlannedDrop],
        received: &Received,
    ) -> Result<Vec<DocumentResult>> {
        let mut documents = Vec::new();
        for drop in plan {
            let Some(document) = routed.iter().find(|document| document.drop.key == drop.key) else {
                documents.push(DocumentResult::unseen(drop));
                continue;
            };
            let mut results = Vec::new();
            for destination in &document.export.routes {
                let record = self.dispatch(document, destination).await?;
                let key = idempotency_key(document.id, &document.export.fingerprint, destination);
                let kind = self.kinds.get(destination).copied().unwrap_or("unknown");
                results.push(RouteResult {
                    destination: destination.clone(),
                    status: record
                        .as_ref()
                        .map(|record| record.status.clone())
                        .unwrap_or_else(|| "missing".into()),
                    remote_id: record.and_then(|record| record.remote_id),
                    deliveries: deliveries(kind, &key, document.id, received),
                });
            }
            documents.push(DocumentResult {
                file: drop.name.clone(),
                key: drop.key.clone(),
                channel: drop.channel,
                recordengine_id: Some(document.id),
                routes: document.export.routes.clone(),
                expected_routes: document.expected_routes.clone(),
                rules_fired: document.export.rules_fired.clone().unwrap_or_default(),
                results,
            });
        }
        Ok(documents)
    }
}

/// Returns whether a request created something: a successful request other than a read.
fn creates(request: &SinkRequest) -> bool {
    request.method != "GET" && request.succeeded()
}

/// Returns the idempotency key a request carried: QuickBooks' `requestid` query
/// parameter, or the `Idempotency-Key` header of Xero and JSON endpoints.
fn carried_key(request: &SinkRequest) -> Option<&str> {
    request
        .query
        .get("requestid")
        .map(String::as_str)
        .or_else(|| request.header("idempotency-key"))
}

/// Successful requests at the sink of `kind` that belong to one route.
fn deliveries(kind: &str, key: &str, document_id: i64, received: &Received) -> usize {
    let keyed = |requests: &[SinkRequest]| {
        requests
            .iter()
            .filter(|request| creates(request) && carried_key(request) == Some(key))
            .count()
    };
    match kind {
        "quickbooks" => keyed(&received.quickbooks),
        "xero" => keyed(&received.xero),
        "http_json" => keyed(&received.generic),
        "hubspot" => hubspot_updates(&received.hubspot, document_id),
        "alerts" => received
            .wecom
            .iter()
            .filter(|message| message.errcode == 0 && names_document(&message.content, document_id))
            .count(),
        _ => 0,
    }
}

/// Successful HubSpot updates that carry the document's id.
fn hubspot_updates(requests: &[SinkRequest], document_id: i64) -> usize {
    requests
        .iter()
        .filter(|request| request.method == "PATCH" && request.succeeded())
        .filter(|request| {
            let property = &request.body["properties"]["recordengine_document_id"];
            property.as_str() == Some(document_id.to_string().as_str()) || property.as_i64() == Some(document_id)
        })
        .count()
}

/// Returns whether an alert's text names the document as `#<id>` (the alert
/// templates write `#<id> <file name>`).
fn names_document(content: &str, document_id: i64) -> bool {
    let marker = format!("#{document_id}");
    content.match_indices(&marker).any(|(at, _)| {
        !content[at + marker.len()..]
            .chars()
            .next()
            .is_some_and(|next| next.is_ascii_digit())
    })
}

/// Successful creates at the keyed sinks whose key belongs to no route of
/// any document: something was booked that the demo did not route.
fn unexpected_requests(routed: &[Routed], kinds: &BTreeMap<String, &'static str>, received: &Received) -> Vec<String> {
    let expected: BTreeSet<String> = routed
        .iter()
        .flat_map(|document| {
            document
                .export
                .routes
                .iter()
                .map(|destination| idempotency_key(document.id, &document.export.fingerprint, destination))
        })
        .collect();
    let mut found = Vec::new();
    for (sink, requests) in [
        ("quickbooks", &received.quickbooks),
        ("xero", &received.xero),
        ("generic", &received.generic),
    ] {
        if !kinds
            .values()
            .any(|kind| server_of_kind(kind).map(LocalServer::name) == Some(sink))
        {
            continue;
        }
        for request in requests.iter().filter(|request| creates(request)) {
            match carried_key(request) {
                Some(key) if expected.contains(key) => {}
                key => found.push(format!(
                    "the {sink} sink accepted {} {} with idempotency key {}, which no routed document has",
                    request.method,
                    request.path,
                    key.unwrap_or("(none)")
                )),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn request(
        method: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        status: u16,
        body: Value,
    ) -> SinkRequest {
        SinkRequest {
            method: method.into(),
            path: "/x".into(),
            query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body,
            at: String::new(),
            response_status: Some(status),
            fault_status: None,
        }
    }

    fn received(quickbooks: Vec<SinkRequest>, generic: Vec<SinkRequest>, hubspot: Vec<SinkRequest>) -> Received {
        Received {
            quickbooks,
            xero: Vec::new(),
            generic,
            hubspot,
            wecom: vec![
                WeComMessage {
                    msgtype: "markdown".into(),
                    content: "Document needs review\n#1005 a.pdf".into(),
                    errcode: 0,
                },
                WeComMessage {
                    msgtype: "markdown".into(),
                    content: "#10050 b.pdf".into(),
                    errcode: 0,
                },
                WeComMessage {
                    msgtype: "markdown".into(),
                    content: "#1005 a.pdf".into(),
                    errcode: 93000,
                },
            ],
        }
    }

    #[test]
    fn deliveries_count_keyed_successes() {
        let got = received(
            vec![
                request("POST", &[("requestid", "k1")], &[], 200, Value::Null),
                request("POST", &[("requestid", "k1")], &[], 500, Value::Null),
                request("GET", &[("requestid", "k1")], &[], 200, Value::Null),
                request("POST", &[("requestid", "k2")], &[], 200, Value::Null),
            ],
            vec![
                request("POST", &[], &[("idempotency-key", "k3")], 201, Value::Null),
                request("POST", &[], &[("idempotency-key", "k3")], 201, Value::Null),
            ],
            vec![
                request(
                    "PATCH",
                    &[],
                    &[],
                    200,
                    serde_json::json!({"properties": {"recordengine_document_id": "1005"}}),
                ),
                request(
                    "PATCH",
                    &[],
                    &[],
                    503,
                    serde_json::json!({"properties": {"recordengine_document_id": "1005"}}),
                ),
            ],
        );

        assert_eq!(deliveries("quickbooks", "k1", 1005, &got), 1);
        assert_eq!(deliveries("http_json", "k3", 1005, &got), 2);
        assert_eq!(deliveries("hubspot", "-", 1005, &got), 1);
        assert_eq!(deliveries("hubspot", "-", 1006, &got), 0);
        assert_eq!(deliveries("alerts", "-", 1005, &got), 1);
        assert_eq!(deliveries("unknown", "k1", 1005, &got), 0);
    }

    #[test]
    fn document_marker_whole_id() {
        assert!(names_document("#1005 a.pdf", 1005));
        assert!(names_document("id #1005", 1005));
        assert!(!names_document("#10050 a.pdf", 1005));
        assert!(!names_document("1005", 1005));
    }
}
