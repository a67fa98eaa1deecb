//! Burst: many webhooks at once against the deployed local stack (`bridgectl
//! dev up`), then a count of what became of each accepted export.
//!
//! Each request is the documented payload with its own document id and
//! invoice number, in USD, so the bundled rules route it to `accounting`
//! only. An export counts as accepted when the webhook responds with 200 and
//! `"status": "accepted"`. It is lost when no bill with its invoice number
//! reaches the QuickBooks sink before the wait ends, the failure table has
//! no record of it, and its routed message is in neither the accounting
//! queue nor its dead-letter queue. It is duplicated when more than one bill
//! reaches the sink. The sink returns the first bill for a repeated
//! `requestid`, so bills are counted as distinct `requestid`s with response
//! status 200.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::figures::{Figure, millis};
use crate::process::{cargo, kill};

const DOCUMENTED: &str = include_str!("../../../tests/fixtures/recordengine/document-exported.json");

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct BurstOptions {
    pub requests: usize,
    pub concurrency: usize,
    /// `endpoints.json` of a stack that is already running; `None` starts one.
    pub endpoints: Option<PathBuf>,
    /// The repository, where `cargo build -p bridgectl` builds the binary that starts a stack.
    pub repo_root: PathBuf,
    /// State directory of the stack this run starts.
    pub state_dir: PathBuf,
    /// Maximum wait for `bridgectl dev up`, including its `sam build`.
    pub start_timeout: Duration,
    /// Maximum wait for the bills after the last request.
    pub settle_timeout: Duration,
}

/// The parts of `endpoints.json` the burst uses.
struct Target {
    webhook_url: String,
    webhook_token: String,
    quickbooks_url: String,
    aws_endpoint_url: String,
    accounting_queue_url: String,
    accounting_dead_letter_queue_url: String,
    failure_table: String,
}

impl Target {
    fn read(path: &Path) -> Result<Target> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let endpoints: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        let field = |value: &Value, name: &str| -> Result<String> {
            let text = value
                .as_str()
                .with_context(|| format!("{} has no {name}", path.display()))?;
            if !text.starts_with("http://127.0.0.1:") && name != "webhook_token" {
                bail!(
                    "{name} {text} in {} is not on 127.0.0.1; the burst only targets 127.0.0.1",
                    path.display()
                );
            }
            Ok(text.to_owned())
        };
        Ok(Target {
            webhook_url: field(&endpoints["webhook_url"], "webhook_url")?,
            webhook_token: field(&endpoints["webhook_token"], "webhook_token")?,
            quickbooks_url: field(&endpoints["sinks"]["quickbooks"], "sinks.quickbooks")?,
            aws_endpoint_url: field(&endpoints["aws_endpoint_url"], "aws_endpoint_url")?,
            accounting_queue_url: output(&endpoints, "AccountingQueueUrl", path)?,
            accounting_dead_letter_queue_url: output(&endpoints, "AccountingDeadLetterQueueUrl", path)?,
            failure_table: output(&endpoints, "FailureTableName", path)?,
        })
    }
}

/// Reads one of the stack's CloudFormation outputs from `endpoints.json`.
fn output(endpoints: &Value, name: &str, path: &Path) -> Result<String> {
    endpoints["outputs"][name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} has no outputs.{name}", path.display()))
}

/// A `bridgectl dev up` this run started; stopped with SIGINT, as Ctrl-C stops it.
struct StartedStack {
    child: Child,
}

impl StartedStack {
    fn start(options: &BurstOptions) -> Result<(StartedStack, PathBuf)> {
        let status = Command::new(cargo())
            .current_dir(&options.repo_root)
            .args(["build", "-p", "bridgectl"])
            .status()
            .context("cannot run cargo build -p bridgectl")?;
        if !status.success() {
            bail!("cargo build -p bridgectl failed with {status}, so no local stack can be started");
        }
        let bridgectl = options.repo_root.join("target").join("debug").join("bridgectl");
        std::fs::create_dir_all(&options.state_dir)
            .with_context(|| format!("cannot create {}", options.state_dir.display()))?;
        let endpoints = options.state_dir.join("endpoints.json");
        let _ = std::fs::remove_file(&endpoints);
        let log_path = options.state_dir.join("bridgectl-dev-up.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;

        let child = Command::new(&bridgectl)
            .args(["dev", "up", "--state-dir"])
            .arg(&options.state_dir)
            .args(["--stack-name", "recordengine-bridge-bench"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bridgectl.display()))?;
        let mut stack = StartedStack { child };
        println!(
            "burst: starting the local stack with bridgectl dev up (log: {})",
            log_path.display()
        );

        let started = Instant::now();
        while !endpoints.exists() {
            if let Some(status) = stack.child.try_wait()? {
                bail!(
                    "bridgectl dev up exited with {status} before writing {}; see {}",
                    endpoints.display(),
                    log_path.display()
                );
            }
            if started.elapsed() > options.start_timeout {
                stack.stop();
                bail!(
                    "bridgectl dev up did not write {} within {} s; see {}",
                    endpoints.display(),
                    options.start_timeout.as_secs(),
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        println!("burst: local stack up after {:.0} s", started.elapsed().as_secs_f64());
        Ok((stack, endpoints))
    }

    fn stop(&mut self) {
        // SAFETY: kill(2) on the process this run spawned.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("burst: bridgectl dev up did not stop within 60 s of SIGINT; killing it");
        kill(&mut self.child);
    }
}

impl Drop for StartedStack {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// One webhook request's result.
struct Sent {
    document_id: i64,
    invoice_number: String,
    status: Option<u16>,
    accepted: bool,
    latency: Duration,
}

fn payload(document_id: i64, invoice_number: &str) -> String {
    let mut root: Value = serde_json::from_str(DOCUMENTED).expect("the documented payload is JSON");
    root["id"] = json!(document_id);
    root["extracted_fields"]["currency"] = json!("USD");
    root["extracted_fields"]["invoice_number"] = json!(invoice_number);
    root.to_string()
}

pub fn run(options: &BurstOptions) -> Result<Vec<Figure>> {
    let (stack, endpoints) = match &options.endpoints {
        Some(path) => (None, path.clone()),
        None => {
            let (stack, path) = StartedStack::start(options)?;
            (Some(stack), path)
        }
    };
    let target = Target::read(&endpoints)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    let result = runtime.block_on(burst(options, &target));
    drop(stack);
    result
}

async fn burst(options: &BurstOptions, target: &Target) -> Result<Vec<Figure>> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    // Ids and invoice numbers unique to this run, so that nothing an earlier run left counts.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let first_id = 10_000_000 + (run_id % 1_000_000) as i64 * 1000;

    println!(
        "burst: {} webhooks at concurrency {} to {}",
        options.requests, options.concurrency, target.webhook_url
    );
    let limit = Arc::new(Semaphore::new(options.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.requests);
    for index in 0..options.requests {
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let client = client.clone();
        let url = target.webhook_url.clone();
        let token = target.webhook_token.clone();
        let invoice_number = format!("BURST-{run_id}-{index}");
        let document_id = first_id + index as i64;
        let body = payload(document_id, &invoice_number);
        tasks.push(tokio::spawn(async move {
            let sent_at = Instant::now();
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await;
            let (status, accepted) = match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    (Some(status), status == 200 && answer["status"] == "accepted")
                }
                Err(_) => (None, false),
            };
            drop(permit);
            Sent {
                document_id,
                invoice_number,
                status,
                accepted,
                latency: sent_at.elapsed(),
            }
        }));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for task in tasks {
        sent.push(task.await?);
    }
    let elapsed = started.elapsed();

    let accepted: BTreeSet<String> = sent
        .iter()
        .filter(|sent| sent.accepted)
        .map(|sent| sent.invoice_number.clone())
        .collect();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for request in &sent {
        let key = request
            .status
            .map_or("no response".to_owned(), |status| status.to_string());
        *statuses.entry(key).or_default() += 1;
    }
    println!(
        "burst: {} accepted in {:.1} s; HTTP statuses {statuses:?}",
        accepted.len(),
        elapsed.as_secs_f64()
    );

    let document_ids: BTreeMap<String, i64> = sent
        .iter()
        .map(|sent| (sent.invoice_number.clone(), sent.document_id))
        .collect();
    let aws = LocalAws::new(&target.aws_endpoint_url)?;
    let (bills, failed) =
        wait_for_outcomes(&client, &aws, target, &accepted, &document_ids, options.settle_timeout).await?;
    // Exports without a bill or a failure record may still wait in a queue. A
    // dispatcher may hold some messages right now or have deferred them with
    // a delay. The scan cannot see those, so they are only counted.
    let hidden = aws.hidden_messages(&target.accounting_queue_url).await?;
    let mut queued = aws.messages_in_queue(&target.accounting_queue_url).await?;
    let dead_lettered = aws.messages_in_queue(&target.accounting_dead_letter_queue_url).await?;
    for (number, count) in &dead_lettered {
        *queued.entry(number.clone()).or_default() += count;
    }

    let recorded_failure = |number: &String| document_ids.get(number).is_some_and(|id| failed.contains(id));
    let billed = accepted.iter().filter(|number| bills.contains_key(*number)).count();
    let failed_count = accepted
        .iter()
        .filter(|number| !bills.contains_key(*number) && recorded_failure(number))
        .count();
    let waiting = accepted
        .iter()
        .filter(|number| !bills.contains_key(*number) && !recorded_failure(number) && queued.contains_key(*number))
        .count();
    // Hidden messages cannot be matched to invoice numbers, so they only lower the count.
    let lost = (accepted.len() - billed - failed_count - waiting).saturating_sub(hidden as usize);
    let queued_twice = queued.values().filter(|count| **count > 1).count();
    println!(
        "burst: of {} accepted exports, {billed} have a bill, {failed_count} a failure record, \
         {waiting} a message in a queue, and {lost} none of these",
        accepted.len()
    );
    let duplicated = bills.values().filter(|count| **count > 1).count();
    let unexpected = bills.keys().filter(|number| !accepted.contains(*number)).count();

    let latencies: Vec<f64> = sent.iter().map(|sent| millis(sent.latency)).collect();
    let rate = options.requests as f64 / elapsed.as_secs_f64();
    let stack_note = "bridgectl dev up: the webhook function behind MiniStack's API Gateway and Lambda, on 127.0.0.1";
    Ok(vec![
        Figure::new("burst.accepted", "count", accepted.len() as f64).with_detail(format!(
            "{} requests at concurrency {}; HTTP statuses {statuses:?}",
            options.requests, options.concurrency
        )),
        Figure::new("burst.billed", "count", billed as f64).with_detail(format!(
            "accepted exports with a bill at the QuickBooks sink, waiting at most {} s",
            options.settle_timeout.as_secs()
        )),
        Figure::new("burst.failed", "count", failed_count as f64).with_detail(
            "accepted exports without a bill that the failure table records for accounting (dead-lettered)",
        ),
        Figure::new("burst.queued", "count", waiting as f64).with_detail(format!(
            "accepted exports with neither, whose message is in the accounting queue or its dead-letter queue; \
             {queued_twice} invoice numbers have more than one message there"
        )),
        Figure::new("burst.lost", "count", lost as f64)
            .with_target(0.0)
            .with_detail(format!(
                "accepted exports with no bill, no failure record and no queued message, less the \
                 {hidden} messages the accounting queue held invisible (in flight or delayed) when it was read"
            )),
        Figure::new("burst.duplicated", "count", duplicated as f64)
            .with_target(0.0)
            .with_detail(format!(
                "invoice numbers with more than one bill; {unexpected} bills for exports not answered accepted"
            )),
        Figure::new("burst.requests_per_second", "req/s", rate).with_detail(stack_note),
        Figure::timing("burst.latency", "ms", &latencies).with_detail("per webhook request, under the burst"),
    ])
}

/// Polls the sink and the failure table until every accepted export has a
/// bill or a failure record, nothing changed for a minute, or `timeout`
/// passed. Returns bills per invoice number and the failed document ids.
async fn wait_for_outcomes(
    client: &reqwest::Client,
    aws: &LocalAws,
    target: &Target,
    accepted: &BTreeSet<String>,
    document_ids: &BTreeMap<String, i64>,
    timeout: Duration,
) -> Result<(BTreeMap<String, usize>, BTreeSet<i64>)> {
    let started = Instant::now();
    let mut last_count = 0;
    let mut last_change = Instant::now();
    loop {
        let bills = bills_at_sink(client, &target.quickbooks_url).await?;
        let failed = aws.failed_documents(&target.failure_table).await?;
        let billed = accepted.iter().filter(|number| bills.contains_key(*number)).count();
        let settled = accepted
            .iter()
            .filter(|number| {
                bills.contains_key(*number) || document_ids.get(*number).is_some_and(|id| failed.contains(id))
            })
            .count();
        if settled != last_count {
            last_count = settled;
            last_change = Instant::now();
        }
        println!(
            "burst: {billed} bills and {} failure records for {} accepted exports ({:.0} s)",
            settled - billed,
            accepted.len(),
            started.elapsed().as_secs_f64()
        );
        let stalled = last_change.elapsed() > Duration::from_secs(60);
        if settled == accepted.len() || stalled || started.elapsed() > timeout {
            // One more read catches duplicates that arrive just after the last bill.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let bills = bills_at_sink(client, &target.quickbooks_url).await?;
            let failed = aws.failed_documents(&target.failure_table).await?;
            return Ok((bills, failed));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// SQS and DynamoDB clients for the local stack's emulator.
struct LocalAws {
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

impl LocalAws {
    fn new(endpoint: &str) -> Result<LocalAws> {
        if !endpoint.starts_with("http://127.0.0.1:") {
            bail!("the AWS endpoint {endpoint} is not on 127.0.0.1; the burst only reads a local emulator");
        }
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
                aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "bridge-bench"),
            ))
            .build();
        Ok(LocalAws {
            sqs: aws_sdk_sqs::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
        })
    }

    /// Counts routed messages per invoice number in the queue at `queue_url`,
    /// without deleting them. Each message read stays invisible for 10
    /// minutes, so the scan counts every message once.
    async fn messages_in_queue(&self, queue_url: &str) -> Result<BTreeMap<String, usize>> {
        let mut message_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut empty_receives = 0;
        // Bounded: 1,000 rounds of 10 messages cover the largest burst, 10,000 requests.
        for _ in 0..1000 {
            let response = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .wait_time_seconds(0)
                .send()
                .await
                .with_context(|| format!("SQS ReceiveMessage on {queue_url} failed"))?;
            let messages = response.messages.unwrap_or_default();
            if messages.is_empty() {
                empty_receives += 1;
                if empty_receives == 3 {
                    break;
                }
                continue;
            }
            empty_receives = 0;
            for message in messages {
                let body: Value = serde_json::from_str(message.body().unwrap_or_default()).unwrap_or(Value::Null);
                let Some(number) = body["payload"]["extracted_fields"]["invoice_number"].as_str() else {
                    continue;
                };
                let id = message.message_id().unwrap_or_default().to_owned();
                message_ids.entry(number.to_owned()).or_default().insert(id);
            }
        }
        Ok(message_ids
            .into_iter()
            .map(|(number, ids)| (number, ids.len()))
            .collect())
    }

    /// Returns the approximate number of messages that a receive cannot return now:
    /// received by a consumer and not yet deleted, or delayed.
    async fn hidden_messages(&self, queue_url: &str) -> Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName;

        let names = [
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .with_context(|| format!("SQS GetQueueAttributes on {queue_url} failed"))?;
        let count = |name: &QueueAttributeName| -> u64 {
            attributes
                .attributes()
                .and_then(|map| map.get(name))
                .and_then(|value| value.parse().ok())
                .unwrap_or_default()
        };
        Ok(names.iter().map(count).sum())
    }

    /// Returns the document ids of the failure table's `accounting` records.
    async fn failed_documents(&self, table: &str) -> Result<BTreeSet<i64>> {
        let mut ids = BTreeSet::new();
        let mut start_key = None;
        // Bounded: a burst leaves at most 10,000 records, far fewer than 1,000 pages.
        for _ in 0..1000 {
            let page = self
                .dynamodb
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .with_context(|| format!("DynamoDB Scan of {table} failed"))?;
            for item in page.items() {
                let destination = item.get("destination").and_then(|value| value.as_s().ok());
                let document_id = item
                    .get("document_id")
                    .and_then(|value| value.as_n().ok())
                    .and_then(|text| text.parse().ok());
                if let (Some("accounting"), Some(id)) = (destination.map(String::as_str), document_id) {
                    ids.insert(id);
                }
            }
            start_key = page.last_evaluated_key;
            if start_key.is_none() {
                break;
            }
        }
        Ok(ids)
    }
}

/// Bills per invoice number at the QuickBooks sink: distinct `requestid`s of
/// `POST …/bill` requests with response status 200, by the bill's `DocNumber`.
async fn bills_at_sink(client: &reqwest::Client, sink: &str) -> Result<BTreeMap<String, usize>> {
    let url = format!("{}/_requests", sink.trim_end_matches('/'));
    let log: Value = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot read {url}"))?
        .json()
        .await
        .with_context(|| format!("{url} did not return JSON"))?;
    Ok(count_bills(&log))
}

fn count_bills(log: &Value) -> BTreeMap<String, usize> {
    let requests = log
        .as_array()
        .or_else(|| log["requests"].as_array())
        .cloned()
        .unwrap_or_default();
    let mut request_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in requests {
        let is_bill =
            request["method"] == "POST" && request["path"].as_str().is_some_and(|path| path.ends_with("/bill"));
        if !is_bill || request["response_status"] != 200 {
            continue;
        }
        let Some(number) = request["body"]["DocNumber"].as_str() else {
            continue;
        };
        let request_id = request["query"]["requestid"].as_str().unwrap_or_default().to_owned();
        request_ids.entry(number.to_owned()).or_default().insert(request_id);
    }
    request_ids
        .into_iter()
        .map(|(number, ids)| (number, ids.len()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bills_count_distinct_request_ids() {
        let log = json!({"requests": [
            {"method": "POST", "path": "/v3/company/1/bill", "query": {"requestid": "a"}, "body": {"DocNumber": "B-1"}, "response_status": 200},
            {"method": "POST", "path": "/v3/company/1/bill", "query": {"requestid": "a"}, "body": {"DocNumber": "B-1"}, "response_status": 200},
            {"method": "POST", "path": "/v3/company/1/bill", "query": {"requestid": "b"}, "body": {"DocNumber": "B-2"}, "response_status": 200},
            {"method": "POST", "path": "/v3/company/1/bill", "query": {"requestid": "c"}, "body": {"DocNumber": "B-2"}, "response_status": 200},
            {"method": "POST", "path": "/v3/company/1/bill", "query": {"requestid": "d"}, "body": {"DocNumber": "B-3"}, "response_status": 500},
            {"method": "GET", "path": "/v3/company/1/query", "query": {}, "body": null, "response_status": 200}
        ]});

        let bills = count_bills(&log);

        assert_eq!(bills.get("B-1"), Some(&1));
        assert_eq!(bills.get("B-2"), Some(&2));
        assert_eq!(bills.get("B-3"), None);
    }

    #[test]
    fn payload_is_unique_and_in_usd() {
        let body: Value = serde_json::from_str(&payload(42, "BURST-1-0")).unwrap();

        assert_eq!(body["id"], 42);
        assert_eq!(body["extracted_fields"]["currency"], "USD");
        assert_eq!(body["extracted_fields"]["invoice_number"], "BURST-1-0");
    }
}
