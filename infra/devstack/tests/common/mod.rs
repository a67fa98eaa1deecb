//! Helpers shared by the integration tests: an HTTP client, multipart bodies
//! and a small webhook receiver, all on 127.0.0.1.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bridge_devstack::json::Json;
use tokio::net::TcpListener;

/// Upper bound for any single wait in these tests.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Builds a client that never uses a proxy, so requests stay on 127.0.0.1.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT_LIMIT)
        .build()
        .unwrap()
}

/// Parses a response body into the number-preserving tree.
pub async fn json_body(response: reqwest::Response) -> Json {
    let bytes = response.bytes().await.unwrap();
    Json::parse_bytes(&bytes).unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&bytes)))
}

/// Follows a path of object keys and array indexes (`"detail.0.loc"`).
pub fn at<'a>(value: &'a Json, path: &str) -> &'a Json {
    let mut node = value;
    for part in path.split('.') {
        node = match part.parse::<usize>() {
            Ok(index) => node.as_array().and_then(|elements| elements.get(index)),
            Err(_) => node.get(part),
        }
        .unwrap_or_else(|| panic!("{path}: no {part} in {node}"));
    }
    node
}

/// Returns the string at `path`.
pub fn text_at<'a>(value: &'a Json, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {value}"))
}

/// One part of a hand-built multipart body.
pub struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content: &'a [u8],
}

pub const BOUNDARY: &str = "devstack-test-boundary-7MA4YWxkTrZu0gW";

/// Builds a `multipart/form-data` body by hand, writing file names as raw UTF-8.
pub fn multipart_body(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match part.filename {
            Some(filename) => format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{filename}\"\r\n",
                part.name
            ),
            None => format!("Content-Disposition: form-data; name=\"{}\"\r\n", part.name),
        };
        body.extend_from_slice(disposition.as_bytes());
        if part.filename.is_some() {
            body.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub fn multipart_content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// Requests a [`Receiver`] got, in arrival order.
type ReceivedRequests = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook receiver on 127.0.0.1 that stores each request and responds with `status`.
pub struct Receiver {
    pub url: String,
    requests: ReceivedRequests,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(status: StatusCode) -> Receiver {
        let requests: ReceivedRequests = Arc::default();
        let router =
            Router::new()
                .route(
                    "/hook",
                    post(
                        |State((store, status)): State<(ReceivedRequests, StatusCode)>,
                         headers: HeaderMap,
                         body: Bytes| async move {
                            store.lock().unwrap().push((headers, body));
                            status
                        },
                    ),
                )
                .with_state((requests.clone(), status));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver {
            url,
            requests,
            _server: server,
        }
    }

    pub fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived, for at most [`WAIT_LIMIT`].
    pub async fn wait_for(&self, count: usize) -> Vec<(HeaderMap, Bytes)> {
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        loop {
            let received = self.received();
            if received.len() >= count || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Returns a URL on 127.0.0.1 with nothing listening: the port is bound once, then released.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}/hook")
}
