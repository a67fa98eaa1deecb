//! End-to-end tests on the local stack that `bridgectl dev up` runs: the
//! real `sam build` and `sam deploy` of template.yaml to MiniStack on
//! 127.0.0.1, with the RecordEngine simulator and the destination sinks.
//!
//! Each test starts its own stack. `sam build` takes minutes when the
//! release binaries are out of date and seconds when cargo finds them up to
//! date (CI builds them first).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bridgectl::dev::stack::DeployedStack;
use bridgectl::dev::{LocalStack, StackOptions};
use serde_json::Value;

/// How long a routed export may take to reach a queue or a sink.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

fn repo_root() -> PathBuf {
    bridge_tests::repo_root()
}

/// Options for a stack of its own under `target/devstack/tests/<name>-<pid>`.
fn options(name: &str) -> StackOptions {
    let root = repo_root();
    let mut options = StackOptions::new(&root);
    options.state_dir = root
        .join("target")
        .join("devstack")
        .join("tests")
        .join(format!("{name}-{}", std::process::id()));
    options.stack_name = format!("bridge-e2e-{name}");
    options
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// The function that consumes a queue through an event source mapping, if any.
fn queue_consumer(stack: &DeployedStack, queue_logical_id: &str) -> Option<String> {
    let resources = stack.template.get("Resources")?.as_object()?;
    resources.iter().find_map(|(_, resource)| {
        if resource.get("Type")?.as_str()? != "AWS::Lambda::EventSourceMapping" {
            return None;
        }
        let properties = resource.get("Properties")?;
        let source = properties.get("EventSourceArn")?.get("Fn::GetAtt")?.get(0)?.as_str()?;
        if source != queue_logical_id {
            return None;
        }
        let function = properties.get("FunctionName")?;
        function
            .get("Ref")
            .or_else(|| function.get("Fn::GetAtt").and_then(|get_att| get_att.get(0)))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

/// Polls a sink's `GET /_requests` until a request matches, for up to [`DELIVERY_TIMEOUT`].
async fn wait_for_sink_request(sink_url: &str, matches: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let url = format!("{sink_url}/_requests");
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let response = http()
            .get(&url)
            .send()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?;
        last = response.json().await.map_err(|error| format!("GET {url}: {error}"))?;
        let requests = last
            .get("requests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(found) = requests.into_iter().find(|request| matches(request)) {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "no matching request at {url} within {DELIVERY_TIMEOUT:?}; it received: {last}"
    ))
}

/// Receives from a queue until a message body matches, for up to [`DELIVERY_TIMEOUT`].
async fn wait_for_queue_message(stack: &LocalStack, queue_url: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let sqs = bridge_shared::aws::Clients::new_guarded(&stack.sdk_config()).sqs;
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while Instant::now() < deadline {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the queue");
        for message in received.messages() {
            let body: Value = serde_json::from_str(message.body().unwrap_or_default()).expect("a JSON message body");
            if matches(&body) {
                return body;
            }
        }
    }
    panic!("no matching message in {queue_url} within {DELIVERY_TIMEOUT:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_export_reaches_accounting() {
    let options = options("smoke");
    let state_dir = options.state_dir.clone();
    let stack = LocalStack::start(options)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
    let endpoints = stack.endpoints().clone();
    let fixture = std::fs::read(repo_root().join("tests/fixtures/recordengine/document-exported.json")).unwrap();

    let response = http()
        .post(&endpoints.webhook_url)
        .bearer_auth(&endpoints.webhook_token)
        .header("content-type", "application/json")
        .body(fixture)
        .send()
        .await
        .expect("POST the webhook");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON response");

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
    let routes = body["routes"].as_array().cloned().unwrap_or_default();
    assert!(routes.contains(&Value::from("accounting")), "{body}");

    let is_invoice = |text: &Value| text.to_string().contains("INV-2025-1147");
    let is_document = |text: &Value| text.get("document_id") == Some(&Value::from(847));

    // CNY exports are also booked in the China accounting system, a JSON
    // endpoint (kind http_json in infra/destinations.yaml), so the generic sink.
    match queue_consumer(stack.stack(), "ChinaAccountingQueue") {
        Some(consumer) => {
            let created =
                |request: &Value| request["response_status"].as_u64() == Some(201) && is_document(&request["body"]);
            let request = wait_for_sink_request(&endpoints.sinks["generic"], created)
                .await
                .unwrap_or_else(|error| panic!("{consumer} delivered nothing: {error}"));
            assert_eq!(request["method"], "POST", "{request}");
        }
        None => {
            let queue_url = &endpoints.outputs["ChinaAccountingQueueUrl"];
            let message = wait_for_queue_message(&stack, queue_url, is_document).await;
            assert_eq!(message["destination"], "china-accounting", "{message}");
        }
    }

    match queue_consumer(stack.stack(), "AccountingQueue") {
        Some(consumer) => {
            // The accounting dispatcher books a bill at the sink of the
            // destination's kind, QuickBooks or Xero.
            let booked = |request: &Value| {
                request["method"] != "GET"
                    && request["response_status"].as_u64() == Some(200)
                    && is_invoice(&request["body"])
            };
            let found = tokio::select! {
                found = wait_for_sink_request(&endpoints.sinks["quickbooks"], booked) => found,
                found = wait_for_sink_request(&endpoints.sinks["xero"], booked) => found,
            };
            let request = found.unwrap_or_else(|error| panic!("{consumer} booked nothing: {error}"));
            assert_eq!(request["response_status"], 200, "{request}");
        }
        None => {
            let queue_url = &endpoints.outputs["AccountingQueueUrl"];
            let message = wait_for_queue_message(&stack, queue_url, is_document).await;
            assert_eq!(message["destination"], "accounting", "{message}");
        }
    }

    stack.stop().await.expect("the stack stops cleanly");
    let _ = std::fs::remove_dir_all(state_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_variable_names_function() {
    let mut options = options("missing-variable");
    let state_dir = options.state_dir.clone();
    std::fs::create_dir_all(&state_dir).unwrap();
    // A copy of template.yaml without ARCHIVE_BUCKET on the webhook function.
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let function_start = template
        .find("\n  WebhookFunction:\n")
        .expect("template.yaml declares WebhookFunction");
    let line = "          ARCHIVE_BUCKET: !Ref ArchiveBucket\n";
    let line_start = function_start
        + template[function_start..]
            .find(line)
            .expect("WebhookFunction sets ARCHIVE_BUCKET");
    let edited = format!("{}{}", &template[..line_start], &template[line_start + line.len()..]);
    let copy = state_dir.join("template.yaml");
    std::fs::write(&copy, edited).unwrap();
    options.template = copy;

    let error = match LocalStack::start(options).await {
        Ok(stack) => {
            stack.stop().await.ok();
            panic!("the stack started although WebhookFunction lacks ARCHIVE_BUCKET");
        }
        Err(error) => format!("{error:#}"),
    };

    assert!(error.contains("function WebhookFunction"), "{error}");
    assert!(error.contains("ARCHIVE_BUCKET"), "{error}");
    assert!(
        !state_dir.join("run.json").exists(),
        "the failed start left its run record"
    );
    assert!(
        !state_dir.join("ministack").join("tmp").exists(),
        "the failed start left the emulator's files"
    );
    let _ = std::fs::remove_dir_all(state_dir);
}

/// Runs the main flows and the failure flow as `make demo` runs them. Every
/// invoice is dropped into S3 (some for the scheduled run, one mapped by
/// metadata, one naming a HubSpot deal), routed by the bundled rules and
/// delivered once. The faulted CRM delivery is dead-lettered, alerted,
/// redriven and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_delivers_every_document_once() {
    let stack = options("demo");
    let state_dir = stack.state_dir.clone();
    let mut demo = bridgectl::demo::DemoOptions::new(repo_root());
    demo.stack = stack;

    let report = bridgectl::demo::run_demo(demo)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));

    let text = serde_json::to_string_pretty(&report).unwrap();
    assert!(report.ok, "{text}");
    assert!(report.documents.len() >= 10, "{text}");
    assert!(report.rules_fired.values().all(|count| *count > 0), "{text}");
    assert!(
        report
            .documents
            .iter()
            .flat_map(|document| &document.results)
            .all(|result| result.status == "done" && result.deliveries == 1),
        "{text}"
    );
    assert_eq!(report.dlq.destination, "crm", "{text}");
    assert!(report.dlq.faulted_requests >= 1, "{text}");
    assert!(report.dlq.alerted, "{text}");
    assert!(report.dlq.redriven, "{text}");
    assert_eq!(report.dlq.delivered_after_redrive, 1, "{text}");
    let _ = std::fs::remove_dir_all(state_dir);
}
