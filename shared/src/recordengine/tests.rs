//! Client tests against a scripted HTTP/1.1 server on 127.0.0.1.

use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::fakes::FakeSecrets;

const TOKEN: &str = "re_0123456789abcdef0123456789abcdef01234567";
const SECRET: &str = "arn:recordengine-token";

/// What the scripted server does with one request.
#[derive(Clone)]
enum Step {
    /// Reads the request, then answers.
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Reads the whole request, then waits before answering 201.
    AnswerLate(Duration),
    /// Reads the whole request, then closes the connection without a word.
    CloseAfterBody,
    /// Reads only the request head and never reads the body.
    StallBeforeBody,
}

fn answer(status: u16, body: &str) -> Step {
    Step::Answer {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    head: String,
    body: Vec<u8>,
}

struct Server {
    base_url: String,
    requests: Arc<StdMutex<Vec<Recorded>>>,
}

impl Server {
    async fn start(steps: Vec<Step>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(StdMutex::new(Vec::new()));
        let steps = Arc::new(StdMutex::new(VecDeque::from(steps)));
        let recorded = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let step = steps
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| answer(500, "script ran out"));
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move { serve(stream, step, recorded).await });
            }
        });
        Server { base_url, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, step: Step, recorded: Arc<StdMutex<Vec<Recorded>>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    if matches!(step, Step::StallBeforeBody) {
        recorded.lock().unwrap().push(Recorded { head, body: Vec::new() });
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    }
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => body.extend_from_slice(&chunk[..read]),
        }
    }
    recorded.lock().unwrap().push(Recorded { head, body });

    let (status, headers, text) = match step {
        Step::Answer { status, headers, body } => (status, headers, body),
        Step::AnswerLate(delay) => {
            tokio::time::sleep(delay).await;
            (201, Vec::new(), r#"{"id": 1}"#.to_owned())
        }
        Step::CloseAfterBody => return,
        Step::StallBeforeBody => unreachable!(),
    };
    let mut response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&text);
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn client(base_url: &str) -> (RecordEngineClient<FakeSecrets>, Arc<FakeSecrets>) {
    let secrets = Arc::new(FakeSecrets::default());
    secrets.set(SECRET, TOKEN);
    let mut config = RecordEngineConfig::new(base_url, SECRET);
    config.request_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(2);
    config.rejected_token_recheck = Duration::from_millis(200);
    let client = RecordEngineClient::new_guarded(config, Arc::clone(&secrets)).expect("client builds");
    (client, secrets)
}

fn request(filename: &str, content: &'static [u8]) -> UploadRequest {
    UploadRequest {
        filename: filename.to_owned(),
        content_type: content_type_for(filename),
        contact_id: 5,
        folder_id: 12,
        profile_id: Some(3),
        external_refs: r#"{"recordengine_bridge":{"record_id":"s3-abc","record_type":"s3_object"}}"#.into(),
        file: FileBody::from_bytes(content),
    }
}

#[tokio::test]
async fn upload_sends_raw_filename_and_fields() {
    let created =
        r#"{"document_id": 847, "filename": "2024年 发票.pdf", "status": "New", "contact_id": 5, "folder_id": 12}"#;
    let server = Server::start(vec![answer(201, created)]).await;
    let (client, _) = client(&server.base_url);

    let document = client
        .upload(request("2024年 发票.pdf", b"%PDF-1.4 body"), None)
        .await
        .unwrap();

    assert_eq!(document.id, 847, "document_id is read as the id");
    assert_eq!(document.status.as_deref(), Some("New"));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let head = &requests[0].head;
    assert!(head.starts_with("POST /api/documents/upload HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("authorization: Bearer {TOKEN}")), "{head}");
    assert!(head.contains("content-type: multipart/form-data; boundary="), "{head}");
    let body = String::from_utf8(requests[0].body.clone()).unwrap();
    assert!(
        body.contains("filename=\"2024年 发票.pdf\""),
        "raw UTF-8 file name: {body}"
    );
    assert!(
        body.contains("Content-Type: application/pdf\r\n\r\n%PDF-1.4 body\r\n"),
        "{body}"
    );
    assert!(body.contains("name=\"contact_id\"\r\n\r\n5\r\n"));
    assert!(body.contains("name=\"folder_id\"\r\n\r\n12\r\n"));
    assert!(body.contains("name=\"profile_id\"\r\n\r\n3\r\n"));
    assert!(body.contains(r#"name="external_refs""#));
    assert!(body.contains(r#"{"recordengine_bridge":{"record_id":"s3-abc","record_type":"s3_object"}}"#));
    let declared: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(declared, requests[0].body.len(), "Content-Length matches the body");
}

#[tokio::test]
async fn any_2xx_is_success() {
    let server = Server::start(vec![answer(200, r#"{"id": 9, "extra": {"x": 1.25}}"#)]).await;
    let (client, _) = client(&server.base_url);

    let document = client.upload(request("a.txt", b"x"), None).await.unwrap();

    assert_eq!(document.id, 9);
}

#[tokio::test]
async fn unauthorized_fails_fast_until_secret_changes() {
    let server = Server::start(vec![
        answer(401, r#"{"detail": "Invalid token"}"#),
        answer(201, r#"{"id": 2}"#),
    ])
    .await;
    let (client, secrets) = client(&server.base_url);

    let first = client.upload(request("a.txt", b"x"), None).await.unwrap_err();
    let second = client.upload(request("a.txt", b"x"), None).await.unwrap_err();

    assert_eq!(first, RecordEngineError::Unauthorized { operation: "upload" });
    assert_eq!(first.error_class(), "permanent");
    assert!(!first.is_retryable());
    assert!(!first.to_string().contains(TOKEN));
    assert_eq!(second, RecordEngineError::Unauthorized { operation: "upload" });
    assert_eq!(server.requests().len(), 1, "the rejected token is not sent again");

    // The same value after the recheck interval still fails without a request.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(client.upload(request("a.txt", b"x"), None).await.is_err());
    assert_eq!(server.requests().len(), 1);

    // An operator stores the new token: the next call after the interval uses it.
    secrets.set(SECRET, "re_new");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let document = client.upload(request("a.txt", b"x"), None).await.unwrap();
    assert_eq!(document.id, 2);
    assert!(server.requests()[1].head.contains("authorization: Bearer re_new"));
}

#[tokio::test]
async fn token_read_from_json_secret() {
    let server = Server::start(vec![answer(201, r#"{"id": 3}"#)]).await;
    let (client, secrets) = client(&server.base_url);
    secrets.set(SECRET, r#"{"token": "re_json"}"#);

    client.upload(request("a.txt", b"x"), None).await.unwrap();

    assert!(server.requests()[0].head.contains("authorization: Bearer re_json"));
}

#[tokio::test]
async fn retryable_statuses_carry_retry_after() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let server = Server::start(vec![
        Step::Answer {
            status: 503,
            headers: vec![("Retry-After", "7".into())],
            body: "maintenance".into(),
        },
        Step::Answer {
            status: 429,
            headers: vec![("Retry-After", date)],
            body: String::new(),
        },
        answer(408, ""),
        answer(500, "boom"),
    ])
    .await;
    let (client, _) = client(&server.base_url);

    let unavailable = client.upload(request("a.txt", b"x"), None).await.unwrap_err();
    let throttled = client.upload(request("a.txt", b"x"), None).await.unwrap_err();
    let timeout = client.upload(request("a.txt", b"x"), None).await.unwrap_err();
    let internal = client.upload(request("a.txt", b"x"), None).await.unwrap_err();

    assert!(unavailable.is_retryable());
    assert_eq!(unavailable.retry_after(), Some(Duration::from_secs(7)));
    assert!(
        unavailable.to_string().contains("HTTP 503: maintenance"),
        "{unavailable}"
    );
    assert_eq!(throttled.error_class(), "throttled");
    let wait = throttled.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
    assert!(timeout.is_retryable());
    assert_eq!(timeout.retry_after(), None);
    assert_eq!(internal.error_class(), "retryable");
}

#[tokio::test]
async fn other_4xx_is_permanent_with_body() {
    let detail =
        format!(r#"{{"detail": [{{"loc": ["body", "contact_id"], "msg": "Contact not found", "echo": "{TOKEN}"}}]}}"#);
    let long = "x".repeat(2000);
    let server = Server::start(vec![answer(422, &detail), answer(413, &long)]).await;
    let (client, _) = client(&server.base_url);

    let rejected = client.upload(request("a.txt", b"x"), None).await.unwrap_err();
    let too_large = client.upload(request("a.txt", b"x"), None).await.unwrap_err();

    let RecordEngineError::Rejected { status, body, .. } = &rejected else {
        panic!("expected Rejected, got {rejected:?}");
    };
    assert_eq!(*status, 422);
    assert!(body.contains("Contact not found"), "{body}");
    assert!(!body.contains(TOKEN), "the token is blanked: {body}");
    assert!(body.contains("[redacted]"));
    assert_eq!(rejected.error_class(), "permanent");
    let RecordEngineError::Rejected { body, .. } = &too_large else {
        panic!("expected Rejected, got {too_large:?}");
    };
    assert_eq!(
        body.chars().count(),
        ERROR_BODY_EXCERPT_CHARS + 1,
        "cut with an ellipsis"
    );
}

#[tokio::test]
async fn timeout_after_full_body_is_ambiguous() {
    let server = Server::start(vec![Step::AnswerLate(Duration::from_secs(3))]).await;
    let (client, _) = client(&server.base_url);

    let error = client.upload(request("a.txt", b"hello"), None).await.unwrap_err();

    assert!(matches!(error, RecordEngineError::Ambiguous { .. }), "{error:?}");
    assert_eq!(error.error_class(), "ambiguous");
    assert!(!error.is_retryable());
    let received = String::from_utf8_lossy(&server.requests()[0].body).into_owned();
    assert!(
        received.contains("\r\n\r\nhello\r\n--"),
        "the server had the whole file: {received}"
    );
}

#[tokio::test]
async fn closed_connection_after_full_body_is_ambiguous() {
    let server = Server::start(vec![Step::CloseAfterBody]).await;
    let (client, _) = client(&server.base_url);

    let error = client.upload(request("a.txt", b"hello"), None).await.unwrap_err();

    assert!(matches!(error, RecordEngineError::Ambiguous { .. }), "{error:?}");
}

#[tokio::test]
async fn timeout_before_body_sent_is_retryable() {
    let server = Server::start(vec![Step::StallBeforeBody]).await;
    let (client, _) = client(&server.base_url);
    // Larger than the socket buffers on both sides, so the body cannot finish.
    let content: &'static [u8] = Box::leak(vec![b'a'; 32 * 1024 * 1024].into_boxed_slice());

    let error = client
        .upload(
            request("big.txt", content),
            Some(Instant::now() + Duration::from_millis(800)),
        )
        .await
        .unwrap_err();

    assert!(error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn unreadable_success_body_is_ambiguous() {
    let server = Server::start(vec![answer(201, "<html>created</html>")]).await;
    let (client, _) = client(&server.base_url);

    let error = client.upload(request("a.txt", b"x"), None).await.unwrap_err();

    assert!(matches!(error, RecordEngineError::Ambiguous { .. }), "{error:?}");
    assert!(error.to_string().contains("no document id"), "{error}");
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (client, _) = client(&format!("http://127.0.0.1:{port}"));

    let error = client.upload(request("a.txt", b"x"), None).await.unwrap_err();

    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn loopback_guard_rejects_other_hosts() {
    let secrets = Arc::new(FakeSecrets::default());
    for base in [
        "http://10.0.0.1",
        "https://recordengine.example.com",
        "http://localhost:8080",
        "http://127.0.0.1.example.com",
    ] {
        let config = RecordEngineConfig::new(base, SECRET);
        let error = RecordEngineClient::new_guarded(config, Arc::clone(&secrets))
            .err()
            .unwrap_or_else(|| panic!("{base} must be rejected"));
        assert!(error.to_string().contains("allows only 127.0.0.1"), "{error}");
    }
    assert_eq!(secrets.reads(), 0, "no token was read");
}

#[test]
fn invalid_base_url_and_ca_bundle_are_rejected() {
    let secrets = Arc::new(FakeSecrets::default());
    let error =
        RecordEngineClient::new_guarded(RecordEngineConfig::new("127.0.0.1:8000", SECRET), Arc::clone(&secrets))
            .err()
            .unwrap();
    assert!(error.to_string().contains("is not a URL"), "{error}");

    let mut config = RecordEngineConfig::new("https://127.0.0.1:8443", SECRET);
    config.ca_bundle_pem = Some(b"not a certificate".to_vec());
    let error = RecordEngineClient::new_guarded(config, secrets).err().unwrap();
    assert!(error.to_string().contains("CA bundle"), "{error}");
}

#[tokio::test]
async fn status_uses_configured_path_and_keeps_numbers() {
    let server = Server::start(vec![answer(
        200,
        r#"{"id": 847, "status": "Exported", "extracted_fields": {"total_amount": 18500.10}}"#,
    )])
    .await;
    let secrets = Arc::new(FakeSecrets::default());
    secrets.set(SECRET, TOKEN);
    let mut config = RecordEngineConfig::new(format!("{}/", server.base_url), SECRET);
    config.status_path = "/api/v2/docs/{id}/status".into();
    let client = RecordEngineClient::new_guarded(config, secrets).unwrap();

    let status = client.document_status(847).await.unwrap();

    assert!(
        server.requests()[0]
            .head
            .starts_with("GET /api/v2/docs/847/status HTTP/1.1")
    );
    assert_eq!(status.get("status").and_then(Node::as_str), Some("Exported"));
    assert_eq!(
        status
            .get("extracted_fields")
            .and_then(|fields| fields.get("total_amount")),
        Some(&Node::Number("18500.10".into())),
        "amounts keep their text"
    );
}

#[tokio::test]
async fn status_of_unknown_document_is_rejected_404() {
    let server = Server::start(vec![answer(404, r#"{"detail": "Not found"}"#)]).await;
    let (client, _) = client(&server.base_url);

    let error = client.document_status(5).await.unwrap_err();

    assert!(
        matches!(error, RecordEngineError::Rejected { status: 404, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn lookup_sends_filter_and_matches() {
    let listed = r#"{"items": [{"id": 12, "external_refs": "{\"recordengine_bridge\": {\"record_id\": \"s3-k 1\"}}"}], "total": 1}"#;
    let server = Server::start(vec![
        answer(200, listed),
        answer(422, r#"{"detail": "unknown filter"}"#),
    ])
    .await;
    let (client, _) = client(&server.base_url);

    let found = client.find_by_correlation_key("s3-k 1").await.unwrap();
    let unsupported = client.find_by_correlation_key("s3-k 1").await.unwrap();

    assert_eq!(found, Lookup::Found { document_id: 12 });
    assert!(
        server.requests()[0]
            .head
            .starts_with("GET /api/documents?external_refs_contains=s3-k+1 HTTP/1.1"),
        "{}",
        server.requests()[0].head
    );
    assert!(matches!(unsupported, Lookup::Inconclusive(reason) if reason.contains("HTTP 422")));
}

#[tokio::test]
async fn lookup_strategy_none_sends_nothing() {
    let server = Server::start(vec![]).await;
    let secrets = Arc::new(FakeSecrets::default());
    let mut config = RecordEngineConfig::new(&server.base_url, SECRET);
    config.lookup = LookupStrategy::None;
    let client = RecordEngineClient::new_guarded(config, secrets).unwrap();

    let lookup = client.find_by_correlation_key("s3-x").await.unwrap();

    assert!(matches!(lookup, Lookup::Inconclusive(_)));
    assert!(server.requests().is_empty());
}

#[test]
fn lookup_matching_is_conservative() {
    let parse = |text: &str| Node::parse(text).unwrap();
    let ours = |id: i64, key: &str| {
        format!(r#"{{"id": {id}, "external_refs": {{"recordengine_bridge": {{"record_id": "{key}"}}}}}}"#)
    };

    assert_eq!(match_lookup(&parse("[]"), "k", "f"), Lookup::NotFound);
    assert_eq!(match_lookup(&parse(r#"{"documents": []}"#), "k", "f"), Lookup::NotFound);
    assert_eq!(
        match_lookup(&parse(&format!("[{}, {}]", ours(30, "k"), ours(21, "k"))), "k", "f"),
        Lookup::Found { document_id: 21 },
        "the oldest of duplicates"
    );
    assert_eq!(
        match_lookup(&parse(&format!(r#"{{"results": [{}]}}"#, ours(4, "k"))), "k", "f"),
        Lookup::Found { document_id: 4 }
    );
    let ignored_filter = parse(&format!("[{}, {}]", ours(1, "k"), ours(2, "other")));
    assert!(
        matches!(match_lookup(&ignored_filter, "k", "f"), Lookup::Inconclusive(reason) if reason.contains("ignore"))
    );
    let no_refs = parse(r#"[{"id": 1, "filename": "a.pdf"}]"#);
    assert!(
        matches!(match_lookup(&no_refs, "k", "f"), Lookup::Inconclusive(reason) if reason.contains("external_refs"))
    );
    assert!(matches!(
        match_lookup(&parse(r#"{"total": 0}"#), "k", "f"),
        Lookup::Inconclusive(_)
    ));
    assert!(matches!(match_lookup(&parse("3"), "k", "f"), Lookup::Inconclusive(_)));
}

#[test]
fn retry_after_forms() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

    assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
    assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(90)));
    let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
    assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
}

#[test]
fn lookup_strategy_parses() {
    assert_eq!("none".parse::<LookupStrategy>(), Ok(LookupStrategy::None));
    assert_eq!(
        "list:external_refs_contains".parse::<LookupStrategy>(),
        Ok(LookupStrategy::ListFilter {
            parameter: "external_refs_contains".into()
        })
    );
    assert!("list:".parse::<LookupStrategy>().is_err());
    assert!("list:a&b=c".parse::<LookupStrategy>().is_err());
    assert!(
        "search"
            .parse::<LookupStrategy>()
            .unwrap_err()
            .contains("list:<query parameter>")
    );
}

#[test]
fn supported_types_by_extension() {
    for name in [
        "a.pdf",
        "B.PDF",
        "x.jpeg",
        "y.m4a",
        "2024年 发票.pdf",
        "this im + age blah.txt",
    ] {
        assert!(is_supported_filename(name), "{name}");
    }
    for name in ["a.exe", "noextension", ".pdf", "a.", "archive.tar.gz", "a.pdf.zip"] {
        assert!(!is_supported_filename(name), "{name}");
    }
    assert_eq!(content_type_for("a.pdf"), "application/pdf");
    assert_eq!(content_type_for("b.txt"), "text/plain");
    assert_eq!(content_type_for("c.unknown"), "application/octet-stream");
}
