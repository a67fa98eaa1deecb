//! Logging and CloudWatch embedded-metric-format (EMF) output.

/// Starts JSON logging to stdout, filtered by `RUST_LOG` (default `info`).
/// Lambda's JSON log format then passes the lines through unchanged.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// The CloudWatch namespace of every metric this bundle emits.
pub const METRICS_NAMESPACE: &str = "RecordEngineBridge";

/// One metric value with its CloudWatch unit (`Count`, `Milliseconds`, …).
#[derive(Debug, Clone, Copy)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub value: f64,
    pub unit: &'a str,
}

/// Writes one EMF line: CloudWatch Logs turns it into metrics with the given dimensions.
pub fn emit_metrics(dimensions: &[(&str, &str)], metrics: &[Metric<'_>]) {
    let mut root = serde_json::Map::new();
    let dimension_names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let definitions: Vec<serde_json::Value> = metrics
        .iter()
        .map(|metric| serde_json::json!({ "Name": metric.name, "Unit": metric.unit }))
        .collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [dimension_names],
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), serde_json::Value::String((*value).into()));
    }
    for metric in metrics {
        root.insert(metric.name.into(), serde_json::json!(metric.value));
    }

    // println! rather than a raw stdout handle, so that test harnesses capture it.
    println!("{}", serde_json::Value::Object(root));
}
