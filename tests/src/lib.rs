//! Test harness: a MiniStack AWS emulator on 127.0.0.1, started by the tests.
//!
//! MiniStack (PyPI `ministack`, pinned in `infra/requirements-ministack.txt`)
//! serves S3, SQS, DynamoDB, Secrets Manager and the rest on one port. Each
//! test binary starts its own emulator on a free port, with a cleared
//! environment holding only dummy credentials and `AWS_ENDPOINT_URL`
//! pointing at itself, so that neither the emulator nor any function it runs
//! can reach a real AWS endpoint. The SDK clients built here also carry the
//! loopback guard: a request to any other host fails the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};
use bridge_shared::aws::Clients;

/// Region of every emulated resource.
pub const REGION: &str = "us-east-1";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_path_buf()
}

/// The virtual environment that `make venv` creates.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("BRIDGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
}

/// The MiniStack executable: `$MINISTACK_BIN`, else the one `make venv` installs.
pub fn ministack_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("MINISTACK_BIN") {
        return PathBuf::from(path);
    }
    let path = venv_dir().join("ministack/bin/ministack");
    assert!(
        path.exists(),
        "MiniStack is not installed at {}: run `make venv` first (it installs infra/requirements-ministack.txt)",
        path.display()
    );
    path
}

/// Picks a free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

/// A unique resource name for one test, within S3's 63-character limit.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &suffix[..12])
}

/// One MiniStack process.
pub struct Emulator {
    port: u16,
    state_dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Emulator {
    /// Starts an emulator on a free port and waits until it answers.
    pub fn start() -> Emulator {
        let port = free_port();
        let state_dir = std::env::temp_dir().join(format!("bridge-ministack-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&state_dir).expect("create the emulator's state directory");

        let emulator = Emulator {
            port,
            state_dir,
            child: Mutex::new(None),
        };
        emulator.spawn();
        emulator
    }

    /// The endpoint URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The environment the emulator runs with, and hands to every function it runs.
    pub fn environment(&self) -> Vec<(String, String)> {
        let endpoint = self.url();
        let tmp = self.state_dir.join("tmp");
        let mut environment = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".to_owned(), self.state_dir.display().to_string()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("BIND_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("GATEWAY_PORT".to_owned(), self.port.to_string()),
            ("MINISTACK_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("AWS_ENDPOINT_URL".to_owned(), endpoint),
            ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
            ("AWS_DEFAULT_REGION".to_owned(), REGION.to_owned()),
            ("AWS_REGION".to_owned(), REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
            (bridge_shared::aws::LOOPBACK_ONLY_VAR.to_owned(), "1".to_owned()),
            ("TMPDIR".to_owned(), tmp.display().to_string()),
            (
                "STATE_DIR".to_owned(),
                self.state_dir.join("state").display().to_string(),
            ),
            ("LOG_LEVEL".to_owned(), "WARNING".to_owned()),
        ];
        environment.sort();
        environment
    }

    fn spawn(&self) {
        std::fs::create_dir_all(self.state_dir.join("tmp")).expect("create the emulator's temporary directory");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("ministack.log"))
            .expect("open the emulator log");

        let mut command = Command::new(ministack_bin());
        command
            .env_clear()
            .envs(self.environment())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill the
        // emulator if this test process dies without running destructors.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("start MiniStack");
        *self.child.lock().unwrap() = Some(child);

        self.wait_until_ready();
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get_status(self.port, "/_ministack/health") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "MiniStack did not answer on {} within 30 s; see {}",
            self.url(),
            self.state_dir.join("ministack.log").display()
        );
    }

    /// Stops the emulator and every process it started.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        let group = child.id() as i32;
        // SAFETY: signalling a process group this harness created.
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; SIGKILL catches anything that ignored SIGTERM.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = child.wait();
    }

    /// Starts the emulator again on the same port, with empty state.
    pub fn restart(&self) {
        self.stop();
        self.spawn();
    }

    /// AWS configuration aimed at this emulator, with dummy credentials.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.url())
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("test", "test", None, None, "bridge-tests"),
            ))
            .build()
    }

    /// SDK clients aimed at this emulator, each refusing any host but 127.0.0.1.
    pub fn clients(&self) -> Clients {
        Clients::new_guarded(&self.sdk_config())
    }

    pub async fn create_bucket(&self, name: &str) {
        self.clients()
            .s3
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }

    /// Creates a queue and returns its URL.
    pub async fn create_queue(&self, name: &str) -> String {
        self.clients()
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue URL")
            .to_owned()
    }

    /// Creates a table with the `pk`/`sk` key schema and the `expires_at` TTL.
    pub async fn create_table(&self, name: &str, with_sort_key: bool) {
        let dynamodb = self.clients().dynamodb;
        let mut request = dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk"))
            .key_schema(key("pk", KeyType::Hash));
        if with_sort_key {
            request = request
                .attribute_definitions(attribute("sk"))
                .key_schema(key("sk", KeyType::Range));
        }
        request.send().await.expect("create table");

        dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .expect("TTL specification"),
            )
            .send()
            .await
            .expect("enable TTL");
    }

    /// Creates a secret and returns its ARN.
    pub async fn create_secret(&self, name: &str, value: &str) -> String {
        self.clients()
            .secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create secret")
            .arn()
            .expect("secret ARN")
            .to_owned()
    }

    /// Receives and deletes every message now in a queue; returns the bodies.
    pub async fn drain_queue(&self, queue_url: &str) -> Vec<String> {
        let sqs = self.clients().sqs;
        let mut bodies = Vec::new();
        // Bounded: a queue under test holds tens of messages at most.
        for _ in 0..50 {
            let response = sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive messages");
            let messages = response.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                bodies.push(message.body().unwrap_or_default().to_owned());
                if let Some(handle) = message.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete message");
                }
            }
        }
        bodies
    }

    /// Keys of every object in a bucket.
    pub async fn list_keys(&self, bucket: &str) -> Vec<String> {
        let response = self
            .clients()
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("list objects");
        response
            .contents()
            .iter()
            .filter_map(|object| object.key().map(str::to_owned))
            .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// One emulator shared by every test in this test binary. Tests keep apart
/// by using [`unique_name`] for their resources.
pub fn shared_emulator() -> &'static Emulator {
    static SHARED: OnceLock<&'static Emulator> = OnceLock::new();
    SHARED.get_or_init(|| {
        // The parent-death signal is tied to the thread that starts the child,
        // and test threads end with their test, so a thread that lives as
        // long as the process starts the shared emulator.
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let emulator: &'static Emulator = Box::leak(Box::new(Emulator::start()));
            sender.send(emulator).expect("hand over the emulator");
            loop {
                std::thread::park();
            }
        });
        receiver.recv().expect("the emulator thread starts MiniStack")
    })
}

fn attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute definition")
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("key schema element")
}

/// Sends `GET path` to 127.0.0.1:port and returns the status code.
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
