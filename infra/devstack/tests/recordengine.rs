//! The RecordEngine simulator, exercised over HTTP on 127.0.0.1.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use bridge_devstack::json::Json;
use bridge_devstack::{ServerHandle, SimulatorConfig, start_recordengine};
use common::{Part, Receiver, at, client, closed_port_url, json_body, multipart_body, multipart_content_type, text_at};
use reqwest::multipart::{Form, Part as FormPart};
use sha2::{Digest, Sha256};

const TOKEN: &str = "test-api-token";

async fn simulator(configure: impl FnOnce(&mut SimulatorConfig)) -> ServerHandle {
    let mut config = SimulatorConfig {
        api_token: Some(TOKEN.into()),
        export_delay: Duration::ZERO,
        ..SimulatorConfig::default()
    };
    configure(&mut config);
    start_recordengine(config).await.unwrap()
}

fn form(filename: &str, content: &'static [u8], contact_id: &str, folder_id: &str) -> Form {
    Form::new()
        .part("file", FormPart::bytes(content).file_name(filename.to_owned()))
        .text("contact_id", contact_id.to_owned())
        .text("folder_id", folder_id.to_owned())
}

async fn upload(server: &ServerHandle, form: Form) -> reqwest::Response {
    client()
        .post(server.url("/api/documents/upload"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn upload_raw(server: &ServerHandle, parts: &[Part<'_>]) -> reqwest::Response {
    client()
        .post(server.url("/api/documents/upload"))
        .bearer_auth(TOKEN)
        .header("content-type", multipart_content_type())
        .body(multipart_body(parts))
        .send()
        .await
        .unwrap()
}

async fn get_json(server: &ServerHandle, path: &str) -> (StatusCode, Json) {
    let response = client().get(server.url(path)).bearer_auth(TOKEN).send().await.unwrap();
    (response.status(), json_body(response).await)
}

async fn uploads(server: &ServerHandle) -> Vec<Json> {
    let response = client().get(server.url("/_requests")).send().await.unwrap();
    at(&json_body(response).await, "uploads").as_array().unwrap().to_vec()
}

/// Collects the field names from the `loc` of each error in a 422 body.
fn error_fields(body: &Json) -> Vec<String> {
    at(body, "detail")
        .as_array()
        .unwrap()
        .iter()
        .map(|error| {
            let location = at(error, "loc").as_array().unwrap();
            location.last().and_then(Json::as_str).unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn upload_without_token_is_401() {
    let server = simulator(|_| {}).await;
    let url = server.url("/api/documents/upload");

    let missing = client()
        .post(&url)
        .multipart(form("a.pdf", b"%PDF", "5", "12"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_body(missing).await.to_compact_string(),
        r#"{"detail":"Not authenticated"}"#
    );

    let basic = client()
        .post(&url)
        .basic_auth("user", Some("pass"))
        .multipart(form("a.pdf", b"%PDF", "5", "12"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let wrong = client()
        .post(&url)
        .bearer_auth("wrong-token")
        .multipart(form("a.pdf", b"%PDF", "5", "12"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    assert!(
        uploads(&server).await.is_empty(),
        "rejected tokens must not be recorded"
    );
}

#[tokio::test]
async fn any_token_accepted_without_config() {
    let server = simulator(|config| config.api_token = None).await;

    let response = client()
        .post(server.url("/api/documents/upload"))
        .bearer_auth("whatever")
        .multipart(form("a.pdf", b"%PDF", "5", "12"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn upload_success_returns_document() {
    let server = simulator(|_| {}).await;

    let response = upload(&server, form("AzureInterior.pdf", b"%PDF-1.4", "5", "12")).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    assert_eq!(at(&body, "id"), &Json::from(1001_i64));
    assert_eq!(text_at(&body, "filename"), "AzureInterior.pdf");
    assert_eq!(text_at(&body, "status"), "New");
    assert_eq!(at(&body, "contact_id"), &Json::from(5_i64));
    assert_eq!(at(&body, "folder_id"), &Json::from(12_i64));
    let created_at = text_at(&body, "created_at");
    assert!(chrono::DateTime::parse_from_rfc3339(created_at).is_ok(), "{created_at}");
    assert!(created_at.ends_with('Z'), "{created_at}");
}

#[tokio::test]
async fn ids_count_up_from_first_id() {
    let server = simulator(|config| config.first_document_id = 5000).await;

    let first = json_body(upload(&server, form("a.pdf", b"1", "5", "12")).await).await;
    let second = json_body(upload(&server, form("b.pdf", b"2", "5", "12")).await).await;

    assert_eq!(at(&first, "id"), &Json::from(5000_i64));
    assert_eq!(at(&second, "id"), &Json::from(5001_i64));
}

#[tokio::test]
async fn missing_file_is_422() {
    let server = simulator(|_| {}).await;

    let response = upload(&server, Form::new().text("contact_id", "5").text("folder_id", "12")).await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&json_body(response).await), vec!["file"]);
}

#[tokio::test]
async fn file_without_filename_is_422() {
    let server = simulator(|_| {}).await;

    let response = upload_raw(
        &server,
        &[
            Part {
                name: "file",
                filename: None,
                content: b"%PDF",
            },
            Part {
                name: "contact_id",
                filename: None,
                content: b"5",
            },
            Part {
                name: "folder_id",
                filename: None,
                content: b"12",
            },
        ],
    )
    .await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&json_body(response).await), vec!["file"]);
}

#[tokio::test]
async fn missing_contact_id_is_422() {
    let server = simulator(|_| {}).await;

    let response = upload(
        &server,
        Form::new()
            .part("file", FormPart::bytes(&b"%PDF"[..]).file_name("a.pdf"))
            .text("folder_id", "12"),
    )
    .await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json_body(response).await;
    assert_eq!(error_fields(&body), vec!["contact_id"]);
    assert_eq!(text_at(&body, "detail.0.type"), "missing");
    assert!(uploads(&server).await[0].get("id").unwrap().is_null());
}

#[tokio::test]
async fn non_integer_ids_are_422() {
    let server = simulator(|_| {}).await;

    let response = upload(&server, form("a.pdf", b"%PDF", "five", "12.5").text("profile_id", "x")).await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json_body(response).await;
    assert_eq!(error_fields(&body), vec!["contact_id", "folder_id", "profile_id"]);
    assert_eq!(text_at(&body, "detail.0.input"), "five");
}

#[tokio::test]
async fn external_refs_must_be_object() {
    let server = simulator(|_| {}).await;

    for refs in ["[1, 2]", "\"text\"", "{not json", "42"] {
        let response = upload(&server, form("a.pdf", b"%PDF", "5", "12").text("external_refs", refs)).await;

        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "accepted {refs}");
        let body = json_body(response).await;
        assert_eq!(error_fields(&body), vec!["external_refs"], "for {refs}");
        assert!(text_at(&body, "detail.0.msg").contains("JSON object"), "for {refs}");
    }
}

#[tokio::test]
async fn unsupported_extension_is_422() {
    let server = simulator(|_| {}).await;

    for filename in ["setup.exe", "README", "archive.tar.gz", ".pdf"] {
        let response = upload(&server, form(filename, b"MZ", "5", "12")).await;

        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "accepted {filename}"
        );
        let body = json_body(response).await;
        assert!(
            text_at(&body, "detail").contains("Unsupported file type"),
            "for {filename}: {body}"
        );
    }

    let upper = upload(&server, form("SCAN.JPEG", b"\xff\xd8", "5", "12")).await;
    assert_eq!(upper.status(), StatusCode::OK);
}

#[tokio::test]
async fn non_multipart_body_is_422() {
    let server = simulator(|_| {}).await;

    let response = client()
        .post(server.url("/api/documents/upload"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"file": "a.pdf"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error_fields(&json_body(response).await),
        vec!["file", "contact_id", "folder_id"]
    );
}

#[tokio::test]
async fn chinese_filename_kept_raw() {
    let server = simulator(|_| {}).await;
    let filename = "2024年 发票.pdf";

    let response = upload_raw(
        &server,
        &[
            Part {
                name: "file",
                filename: Some(filename),
                content: b"%PDF",
            },
            Part {
                name: "contact_id",
                filename: None,
                content: b"5",
            },
            Part {
                name: "folder_id",
                filename: None,
                content: b"12",
            },
        ],
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    assert_eq!(text_at(&body, "filename"), filename);
    let (_, document) = get_json(&server, "/api/documents/1001").await;
    assert_eq!(text_at(&document, "filename"), filename);
    assert_eq!(text_at(&uploads(&server).await[0], "filename"), filename);
}

#[tokio::test]
async fn rfc5987_filename_is_decoded() {
    let server = simulator(|_| {}).await;

    // reqwest writes a non-ASCII file name as filename*=utf-8''<percent-encoded>.
    let response = upload(&server, form("发票 März.pdf", b"%PDF", "5", "12")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text_at(&json_body(response).await, "filename"), "发票 März.pdf");
}

#[tokio::test]
async fn extended_filename_parameter_wins() {
    let server = simulator(|_| {}).await;
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"fallback.pdf\"; \
         filename*=UTF-8''2024%E5%B9%B4%20%E5%8F%91%E7%A5%A8.pdf\r\n\r\n%PDF\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"contact_id\"\r\n\r\n5\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"folder_id\"\r\n\r\n12\r\n\
         --{boundary}--\r\n",
        boundary = common::BOUNDARY
    );

    let response = client()
        .post(server.url("/api/documents/upload"))
        .bearer_auth(TOKEN)
        .header("content-type", multipart_content_type())
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text_at(&json_body(response).await, "filename"), "2024年 发票.pdf");
}

#[tokio::test]
async fn upload_records_sha256_and_fields() {
    let server = simulator(|_| {}).await;
    let content: &'static [u8] = b"%PDF-1.4 fixture bytes \x00\x01\x02";
    let refs = r#"{"bridge": {"key": "k-1", "amount": 1.10}}"#;

    let response = upload(
        &server,
        form("a.pdf", content, "5", "12")
            .text("profile_id", "3")
            .text("external_refs", refs),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    let records = uploads(&server).await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(text_at(record, "sha256"), hex::encode(Sha256::digest(content)));
    assert_eq!(at(record, "size"), &Json::from(content.len() as u64));
    assert_eq!(at(record, "id"), &Json::from(1001_i64));
    assert_eq!(text_at(record, "fields.contact_id"), "5");
    assert_eq!(text_at(record, "fields.folder_id"), "12");
    assert_eq!(text_at(record, "fields.profile_id"), "3");
    assert_eq!(text_at(record, "fields.external_refs"), refs);
    assert!(text_at(record, "received_at").ends_with('Z'));

    let cleared = client().delete(server.url("/_requests")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert!(uploads(&server).await.is_empty());
}

#[tokio::test]
async fn fault_503_then_200() {
    let server = simulator(|_| {}).await;
    let fault = client()
        .post(server.url("/_faults"))
        .json(&serde_json::json!({"status": 503, "times": 1, "retry_after": "5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), StatusCode::OK);

    let first = upload(&server, form("a.pdf", b"%PDF", "5", "12")).await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.headers()["retry-after"], "5");
    assert!(json_body(first).await.get("detail").is_some());

    let second = upload(&server, form("a.pdf", b"%PDF", "5", "12")).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(at(&json_body(second).await, "id"), &Json::from(1001_i64));

    let records = uploads(&server).await;
    assert_eq!(records.len(), 2);
    assert!(at(&records[0], "id").is_null());
    assert_eq!(at(&records[0], "response_status"), &Json::from(503_u64));
    assert_eq!(at(&records[1], "response_status"), &Json::from(200_u64));
    let (_, list) = get_json(&server, "/api/documents").await;
    assert_eq!(at(&list, "total"), &Json::from(1_u64));
}

#[tokio::test]
async fn fault_times_are_counted() {
    let server = simulator(|_| {}).await;
    client()
        .post(server.url("/_faults"))
        .json(&serde_json::json!({"status": 500, "times": 2, "body": "{\"detail\":\"boom\"}"}))
        .send()
        .await
        .unwrap();

    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            upload(&server, form("a.pdf", b"%PDF", "5", "12"))
                .await
                .status()
                .as_u16(),
        );
    }

    assert_eq!(statuses, vec![500, 500, 200]);
    let pending = json_body(client().get(server.url("/_faults")).send().await.unwrap()).await;
    assert_eq!(at(&pending, "faults").as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn fault_body_override_is_sent() {
    let server = simulator(|_| {}).await;
    client()
        .post(server.url("/_faults"))
        .json(&serde_json::json!({"status": 502, "body": "<html>bad gateway</html>"}))
        .send()
        .await
        .unwrap();

    let response = upload(&server, form("a.pdf", b"%PDF", "5", "12")).await;

    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(response.text().await.unwrap(), "<html>bad gateway</html>");
}

#[tokio::test]
async fn delayed_response_still_creates_document() {
    let server = simulator(|_| {}).await;
    client()
        .post(server.url("/_faults"))
        .json(&serde_json::json!({"status": 0, "delay_ms": 1500}))
        .send()
        .await
        .unwrap();

    let result = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(server.url("/api/documents/upload"))
        .bearer_auth(TOKEN)
        .multipart(form("a.pdf", b"%PDF", "5", "12").text("external_refs", r#"{"bridge": {"key": "lost-1"}}"#))
        .send()
        .await;
    assert!(result.is_err_and(|error| error.is_timeout()));

    let (status, list) = get_json(&server, "/api/documents?external_refs_contains=lost-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(at(&list, "total"), &Json::from(1_u64));
    assert_eq!(at(&list, "items.0.id"), &Json::from(1001_i64));
}

#[tokio::test]
async fn invalid_fault_is_400() {
    let server = simulator(|_| {}).await;

    for body in [
        r#"{"status": 42}"#,
        r#"{"times": 0}"#,
        "[]",
        "nope",
        r#"{"status": 503, "extra": 1}"#,
    ] {
        let response = client().post(server.url("/_faults")).body(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "accepted {body}");
    }

    let cleared = client().delete(server.url("/_faults")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn get_document_errors() {
    let server = simulator(|_| {}).await;

    let (status, body) = get_json(&server, "/api/documents/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body.to_compact_string(), r#"{"detail":"Not found"}"#);

    let (status, _) = get_json(&server, "/api/documents/abc").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let unauthenticated = client().get(server.url("/api/documents/1001")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn document_has_external_refs_object() {
    let server = simulator(|_| {}).await;
    upload(
        &server,
        form("a.pdf", b"%PDF", "5", "12").text("external_refs", r#"{"erp": {"id": "PO-7", "total": 16500.10}}"#),
    )
    .await;

    let (status, document) = get_json(&server, "/api/documents/1001").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        at(&document, "external_refs").to_compact_string(),
        r#"{"erp":{"id":"PO-7","total":16500.10}}"#
    );
    assert_eq!(text_at(&document, "status"), "New");
}

#[tokio::test]
async fn list_filters_documents() {
    let server = simulator(|_| {}).await;
    upload(
        &server,
        form("a.pdf", b"1", "5", "12").text("external_refs", r#"{"bridge": {"key": "k-a"}}"#),
    )
    .await;
    upload(
        &server,
        form("b.pdf", b"2", "6", "12").text("external_refs", r#"{"bridge": {"key": "k-b"}}"#),
    )
    .await;
    upload(&server, form("c.pdf", b"3", "5", "13")).await;

    let cases = [
        ("/api/documents", 3),
        ("/api/documents?contact_id=5", 2),
        ("/api/documents?folder_id=12", 2),
        ("/api/documents?contact_id=5&folder_id=12", 1),
        ("/api/documents?external_refs_contains=k-b", 1),
        ("/api/documents?external_refs_contains=nothing", 0),
        ("/api/documents?status=New", 3),
        ("/api/documents?status=Export", 0),
        ("/api/documents?limit=1", 3),
    ];
    for (path, total) in cases {
        let (status, body) = get_json(&server, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(at(&body, "total"), &Json::from(total as u64), "{path}");
    }

    let (_, page) = get_json(&server, "/api/documents?limit=1&skip=1").await;
    assert_eq!(at(&page, "items").as_array().unwrap().len(), 1);
    assert_eq!(text_at(&page, "items.0.filename"), "b.pdf");

    for path in [
        "/api/documents?contact_id=x",
        "/api/documents?limit=0",
        "/api/documents?limit=5000",
    ] {
        let (status, _) = get_json(&server, path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
    }
}

async fn export_now(server: &ServerHandle, id: i64, overrides: Option<&str>) -> reqwest::Response {
    let request = client().post(server.url(&format!("/_export/{id}")));
    let request = match overrides {
        Some(body) => request.header("content-type", "application/json").body(body.to_owned()),
        None => request,
    };
    request.send().await.unwrap()
}

#[tokio::test]
async fn export_webhook_is_delivered() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let url = receiver.url.clone();
    let server = simulator(|config| {
        config.webhook_url = Some(url);
        config.webhook_token = "hook-secret".into();
    })
    .await;
    let refs = r#"{"bridge": {"key": "k-1", "rate": 1.10}, "salesforce": {"record_id": "001Qy"}}"#;
    upload(
        &server,
        form("AzureInterior.pdf", b"%PDF", "5", "12").text("external_refs", refs),
    )
    .await;

    let response = export_now(&server, 1001, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let delivery = json_body(response).await;
    assert_eq!(at(&delivery, "status_code"), &Json::from(200_u64));

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(headers["authorization"], "Bearer hook-secret");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(text_at(&delivery, "body_sha256"), hex::encode(Sha256::digest(body)));

    let payload = Json::parse_bytes(body).unwrap();
    let keys: Vec<&str> = payload
        .as_object()
        .unwrap()
        .iter()
        .take(4)
        .map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(keys, vec!["schema_version", "event", "timestamp", "id"]);
    assert_eq!(text_at(&payload, "schema_version"), "2.0");
    assert_eq!(text_at(&payload, "event"), "document.exported");
    assert!(chrono::DateTime::parse_from_rfc3339(text_at(&payload, "timestamp")).is_ok());
    assert_eq!(at(&payload, "id"), &Json::from(1001_i64));
    assert_eq!(text_at(&payload, "status"), "Export");
    assert_eq!(text_at(&payload, "source"), "API");
    assert_eq!(text_at(&payload, "filename"), "AzureInterior.pdf");
    assert_eq!(text_at(&payload, "original_filename"), "AzureInterior.pdf");
    assert_eq!(text_at(&payload, "doc_date"), "2023-03-20");
    assert_eq!(text_at(&payload, "contact_name"), "Azure Interior");
    assert_eq!(at(&payload, "contact_id"), &Json::from(5_i64));
    assert_eq!(at(&payload, "folder_id"), &Json::from(12_i64));
    assert_eq!(at(&payload, "confidence_score"), &Json::from(96_u64));
    assert_eq!(text_at(&payload, "confidence_label"), "Excellent");

    // Money arrives as strings, with the decimal text RecordEngine extracted.
    assert_eq!(at(&payload, "extracted_fields.total_amount"), &Json::from("279.84"));
    assert_eq!(at(&payload, "extracted_fields.subtotal"), &Json::from("262.9"));
    assert_eq!(at(&payload, "extracted_fields.tax"), &Json::from("16.94"));
    assert_eq!(text_at(&payload, "extracted_fields.vendor"), "Azure Interior");
    assert_eq!(text_at(&payload, "extracted_fields.invoice_number"), "INV/2023/03/0008");
    assert_eq!(text_at(&payload, "extracted_fields.currency"), "USD");
    let lines = at(&payload, "line_items").as_array().unwrap();
    assert_eq!(lines.len(), 4);
    for line in lines {
        for key in ["quantity", "unit_price", "amount"] {
            assert!(
                matches!(at(line, key), Json::String(_)),
                "{key} is not a string in {line}"
            );
        }
    }
    assert_eq!(text_at(&payload, "custom_fields.PO Number"), "444");

    // external_refs arrive exactly as uploaded, number text included.
    assert_eq!(at(&payload, "external_refs"), &Json::parse(refs).unwrap());
    assert!(String::from_utf8_lossy(body).contains(r#""rate":1.10"#));
    assert!(text_at(&payload, "doc_url").starts_with(server.base_url()));

    let (_, document) = get_json(&server, "/api/documents/1001").await;
    assert_eq!(text_at(&document, "status"), "Export");
    let exports = json_body(client().get(server.url("/_exports")).send().await.unwrap()).await;
    assert_eq!(at(&exports, "exports").as_array().unwrap().len(), 1);
    assert_eq!(at(&exports, "exports.0.id"), &Json::from(1001_i64));
}

#[tokio::test]
async fn export_follows_upload_after_delay() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let url = receiver.url.clone();
    let server = simulator(|config| {
        config.webhook_url = Some(url);
        config.export_delay = Duration::from_millis(200);
    })
    .await;

    upload(&server, form("fapiao-shenzhen-2024.txt", "发票".as_bytes(), "5", "12")).await;
    let received = receiver.wait_for(1).await;

    assert_eq!(received.len(), 1);
    let payload = Json::parse_bytes(&received[0].1).unwrap();
    assert_eq!(text_at(&payload, "extracted_fields.currency"), "CNY");
    assert_eq!(
        text_at(&payload, "extracted_fields.vendor"),
        "深圳市南岭云计算科技有限公司"
    );
    assert_eq!(text_at(&payload, "extracted_fields.total_amount"), "16430.00");
    assert!(
        received[0].0.get("authorization").is_none(),
        "an empty webhook token must send no header"
    );
}

#[tokio::test]
async fn export_overrides_are_merged() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let url = receiver.url.clone();
    let server = simulator(|config| config.webhook_url = Some(url)).await;
    upload(&server, form("AzureInterior.pdf", b"%PDF", "5", "12")).await;

    export_now(&server, 1001, None).await;
    let response = export_now(
        &server,
        1001,
        Some(r#"{"extracted_fields": {"total_amount": "300.10"}}"#),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let second = Json::parse_bytes(&received[1].1).unwrap();
    assert_eq!(text_at(&second, "extracted_fields.total_amount"), "300.10");
    assert_eq!(text_at(&second, "extracted_fields.subtotal"), "262.9");
    assert_eq!(text_at(&second, "extracted_fields.vendor"), "Azure Interior");
}

#[tokio::test]
async fn export_without_scenario_is_generic() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let url = receiver.url.clone();
    let server = simulator(|config| config.webhook_url = Some(url)).await;
    upload(&server, form("unknown-scan.png", b"\x89PNG", "5", "12")).await;

    export_now(&server, 1001, None).await;

    let payload = Json::parse_bytes(&receiver.received()[0].1).unwrap();
    assert_eq!(at(&payload, "confidence_score"), &Json::from(75_u64));
    assert_eq!(text_at(&payload, "extracted_fields.currency"), "USD");
    assert_eq!(text_at(&payload, "extracted_fields.total_amount"), "0");
    assert_eq!(at(&payload, "line_items"), &Json::Array(Vec::new()));
    assert_eq!(at(&payload, "external_refs"), &Json::Object(Vec::new()));
}

#[tokio::test]
async fn export_records_receiver_status() {
    let receiver = Receiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let url = receiver.url.clone();
    let server = simulator(|config| config.webhook_url = Some(url)).await;
    upload(&server, form("a.pdf", b"%PDF", "5", "12")).await;

    let delivery = json_body(export_now(&server, 1001, None).await).await;

    assert_eq!(at(&delivery, "status_code"), &Json::from(500_u64));
    assert!(at(&delivery, "error").is_null());
}

#[tokio::test]
async fn export_to_closed_port_records_error() {
    let url = closed_port_url().await;
    let server = simulator(|config| config.webhook_url = Some(url)).await;
    upload(&server, form("a.pdf", b"%PDF", "5", "12")).await;

    let delivery = json_body(export_now(&server, 1001, None).await).await;

    assert!(at(&delivery, "status_code").is_null());
    assert!(!text_at(&delivery, "error").is_empty());
}

#[tokio::test]
async fn export_command_errors() {
    let server = simulator(|_| {}).await;
    upload(&server, form("a.pdf", b"%PDF", "5", "12")).await;

    let no_webhook = export_now(&server, 1001, None).await;
    assert_eq!(no_webhook.status(), StatusCode::CONFLICT);

    let unknown = export_now(&server, 4242, None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let receiver = Receiver::start(StatusCode::OK).await;
    let set = client()
        .put(server.url("/_config"))
        .json(&serde_json::json!({"webhook_url": receiver.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);

    for overrides in ["[1]", "{broken"] {
        let response = export_now(&server, 1001, Some(overrides)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "accepted {overrides}");
    }
    assert_eq!(export_now(&server, 1001, None).await.status(), StatusCode::OK);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn config_rejects_bad_values() {
    let server = simulator(|_| {}).await;

    for body in [
        r#"{"webhook_url": "ftp://127.0.0.1/x"}"#,
        r#"{"export_delay_ms": -1}"#,
        r#"{"webhook_token": 5}"#,
        r#"{"webhook": "http://127.0.0.1/"}"#,
        "[]",
    ] {
        let response = client().put(server.url("/_config")).body(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "accepted {body}");
    }

    let current = json_body(client().get(server.url("/_config")).send().await.unwrap()).await;
    assert!(at(&current, "webhook_url").is_null());
    assert_eq!(at(&current, "export_delay_ms"), &Json::from(0_u64));
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let server = simulator(|_| {}).await;
    let url = server.url("/_requests");

    server.shutdown().await.unwrap();

    assert!(client().get(url).send().await.is_err());
}
