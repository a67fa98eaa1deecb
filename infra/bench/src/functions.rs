//! The function binaries and the environment each one needs to get through init.
//!
//! Every URL and ARN points at 127.0.0.1 or is a dummy: no init below makes a
//! network call. Each function reads its configuration from these variables,
//! builds its AWS clients, and loads what it needs from the copy built into
//! the binary (routing rules, destination settings, contact mapping) because
//! the `*_SOURCE` variables are unset. Secrets are read at the first event,
//! not at init.

/// One function binary and what its init does.
#[derive(Debug, Clone)]
pub struct Function {
    /// The binary, as `cargo lambda build` names its directory under `target/lambda`.
    pub binary: &'static str,
    /// Short name used in figure names.
    pub name: &'static str,
    /// Description of the init work besides reading the environment and building the AWS clients.
    pub init: &'static str,
    /// Function-specific variables; `{endpoint}` becomes `http://127.0.0.1:<stub port>`.
    pub variables: &'static [(&'static str, &'static str)],
}

impl Function {
    /// Returns the variables with `{endpoint}` filled in.
    pub fn environment(&self, endpoint: &str) -> Vec<(String, String)> {
        self.variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.replace("{endpoint}", endpoint)))
            .collect()
    }
}

/// `DESTINATION_QUEUES` and `SOURCE_QUEUES`: destination name to queue URL.
const QUEUES: &str = "accounting={endpoint}/000000000000/accounting,china-accounting={endpoint}/000000000000/china-accounting,\
crm={endpoint}/000000000000/crm,alerts={endpoint}/000000000000/alerts";

/// `DEAD_LETTER_QUEUES`: destination name to dead-letter queue ARN, as the template sets it.
const DEAD_LETTER_QUEUES: &str = "accounting=arn:aws:sqs:us-east-1:000000000000:accounting-dlq,\
china-accounting=arn:aws:sqs:us-east-1:000000000000:china-accounting-dlq,\
crm=arn:aws:sqs:us-east-1:000000000000:crm-dlq,alerts=arn:aws:sqs:us-east-1:000000000000:alerts-dlq";

/// Every function binary of the bundle.
pub const FUNCTIONS: &[Function] = &[
    Function {
        binary: "bridge-webhook",
        name: "webhook",
        init: "parses the bundled routing rules",
        variables: &[
            ("ARCHIVE_BUCKET", "bench-archive"),
            ("DESTINATION_QUEUES", QUEUES),
            (
                "WEBHOOK_TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:webhook-token",
            ),
            ("WEBHOOK_AUTH_MODE", "bearer"),
            ("MAX_BODY_BYTES", "1048576"),
        ],
    },
    Function {
        binary: "bridge-dispatch",
        name: "dispatch",
        init: "parses the bundled destination settings and builds the QuickBooks adapter (DESTINATION=accounting)",
        variables: &[
            ("DESTINATION", "accounting"),
            ("QUEUE_URL", "{endpoint}/000000000000/accounting"),
            ("DEAD_LETTER_QUEUE_URL", "{endpoint}/000000000000/accounting-dlq"),
            ("DESTINATION_BASE_URL", "{endpoint}"),
            ("DESTINATION_TOKEN_URL", "{endpoint}/oauth2/v1/tokens/bearer"),
            (
                "CREDENTIALS_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:accounting",
            ),
        ],
    },
    Function {
        binary: "bridge-s3-upload",
        name: "s3-upload",
        init: "parses the bundled contact mapping and builds the RecordEngine HTTP client",
        variables: &[
            ("INBOX_QUEUE_URL", "{endpoint}/000000000000/inbox"),
            ("RECORDENGINE_BASE_URL", "{endpoint}"),
            (
                "RECORDENGINE_TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:recordengine-token",
            ),
        ],
    },
    Function {
        binary: "bridge-scheduled-upload",
        name: "scheduled-upload",
        init: "parses the bundled contact mapping and builds the RecordEngine HTTP client",
        variables: &[
            ("INBOX_BUCKET", "bench-inbox"),
            ("INBOX_QUEUE_URL", "{endpoint}/000000000000/inbox"),
            ("RECORDENGINE_BASE_URL", "{endpoint}"),
            (
                "RECORDENGINE_TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:recordengine-token",
            ),
        ],
    },
    Function {
        binary: "bridge-dlq-alert",
        name: "dlq-alert",
        init: "builds the WeCom HTTP client",
        variables: &[
            ("DEAD_LETTER_QUEUES", DEAD_LETTER_QUEUES),
            ("SOURCE_QUEUES", QUEUES),
            ("WECOM_BASE_URL", "{endpoint}"),
            (
                "WECOM_KEY_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:wecom-key",
            ),
            ("ALERT_LOCALE", "en"),
        ],
    },
    Function {
        binary: "bridge-sweep",
        name: "sweep",
        init: "parses the bundled routing rules",
        variables: &[("ARCHIVE_BUCKET", "bench-archive"), ("DESTINATION_QUEUES", QUEUES)],
    },
];

/// Variables every function gets: the template's globals, the Lambda
/// runtime's own, dummy credentials and the loopback-only settings.
pub fn common_environment(runtime_api: &str, endpoint: &str, home: &str) -> Vec<(String, String)> {
    let pairs = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".to_owned()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", format!("{home}/no-aws-config")),
        ("AWS_SHARED_CREDENTIALS_FILE", format!("{home}/no-aws-credentials")),
        ("HOME", home.to_owned()),
        ("BRIDGE_LOOPBACK_ONLY", "1".to_owned()),
        ("RUST_LOG", "info".to_owned()),
        ("DOCUMENT_TABLE", "bench-documents".to_owned()),
        ("FAILURE_TABLE", "bench-failures".to_owned()),
        ("ALERTS_QUEUE_URL", format!("{endpoint}/000000000000/alerts")),
    ];
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// Selects the functions named in `names`, or all of them when `names` is empty.
pub fn select(names: &[String]) -> anyhow::Result<Vec<&'static Function>> {
    if names.is_empty() {
        return Ok(FUNCTIONS.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            FUNCTIONS
                .iter()
                .find(|function| function.name == name || function.binary == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = FUNCTIONS.iter().map(|function| function.name).collect();
                    anyhow::anyhow!("unknown function {name:?}: use one of {}", known.join(", "))
                })
        })
        .collect()
}
