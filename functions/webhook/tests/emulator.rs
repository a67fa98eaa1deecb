//! The webhook handler against MiniStack through the real AWS SDK: S3 for the
//! archive, DynamoDB for deduplication and correlation, SQS for the routed
//! messages and Secrets Manager for the token.

mod support;

use std::sync::Arc;

use bridge_shared::auth::AuthMode;
use bridge_shared::aws::DynamoDocumentStore;
use bridge_shared::json::Node;
use bridge_shared::rules::Approval;
use bridge_tests::{Emulator, shared_emulator};
use serde_json::{Value, json};
use support::*;

/// The documented payload with edits applied to its JSON tree.
fn payload(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut root: Value = serde_json::from_str(DOCUMENTED).unwrap();
    edit(root.as_object_mut().unwrap());
    root.to_string()
}

fn set_field(root: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    root["extracted_fields"]
        .as_object_mut()
        .unwrap()
        .insert(key.into(), value);
}

/// A USD document from an untrusted vendor: the plain accounting route.
fn plain_usd(id: i64) -> String {
    payload(|root| {
        root.insert("id".into(), json!(id));
        set_field(root, "currency", json!("USD"));
    })
}

#[tokio::test]
async fn documented_payload_with_and_without_envelope() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let (status, body) = post(&app, DOCUMENTED).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["document_id"], 847);
    assert!(
        body["routes"].as_array().unwrap().contains(&json!("accounting")),
        "{body}"
    );
    let messages = stack.drain().await;
    assert_eq!(messages["accounting"].len(), 1);
    let message = &messages["accounting"][0];
    assert_eq!(message.document_id, 847);
    assert_eq!(message.decision.ruleset_version, "2026-12-04.1");
    assert!(message.decision.rules_fired.contains(&"approval-required".to_string()));
    assert_eq!(message.approval, Approval::Required);
    assert_eq!(
        message
            .payload
            .as_ref()
            .and_then(|p| p.get("extracted_fields"))
            .and_then(|f| f.get("total_amount")),
        Some(&Node::String("18500.0".into()))
    );

    // The bare generation has the same content, so it is the same export.
    let (status, body) = post(&app, DOCUMENTED_BARE).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "duplicate");

    // A fresh document id in the bare generation routes on its own.
    let mut bare: Value = serde_json::from_str(DOCUMENTED_BARE).unwrap();
    bare["id"] = json!(9847);
    let (status, body) = post(&app, &bare.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert!(body["routes"].as_array().unwrap().contains(&json!("accounting")));
}

#[tokio::test]
async fn confidence_threshold_routes() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let low = payload(|root| {
        root.insert("id".into(), json!(1));
        root.insert("confidence_score".into(), json!(59));
    });
    let (status, body) = post(&app, &low).await;
    assert_eq!(status, 200);
    assert_eq!(body["routes"], json!(["alerts"]));
    assert_eq!(destinations_with_messages(&stack.drain().await), vec!["alerts"]);

    let sixty = payload(|root| {
        root.insert("id".into(), json!(2));
        root.insert("confidence_score".into(), json!(60));
        set_field(root, "currency", json!("USD"));
    });
    let (_, body) = post(&app, &sixty).await;
    assert_eq!(body["routes"], json!(["accounting"]));
    assert_eq!(destinations_with_messages(&stack.drain().await), vec!["accounting"]);
}

#[tokio::test]
async fn currency_and_trusted_vendor_routes() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let cny = payload(|root| {
        root.insert("id".into(), json!(3));
    });
    let (_, body) = post(&app, &cny).await;
    assert!(
        body["routes"].as_array().unwrap().contains(&json!("china-accounting")),
        "{body}"
    );
    assert_eq!(stack.drain().await["china-accounting"].len(), 1);

    let trusted = payload(|root| {
        root.insert("id".into(), json!(4));
        root.insert("contact_name".into(), json!("Amazon Web Services"));
        set_field(root, "currency", json!("USD"));
    });
    let (_, body) = post(&app, &trusted).await;
    assert_eq!(body["routes"], json!(["accounting"]));
    let messages = stack.drain().await;
    assert_eq!(messages["accounting"][0].approval, Approval::Skip);
    assert_eq!(messages["accounting"][0].decision.rules_fired, vec!["trusted-vendor"]);
}

#[tokio::test]
async fn money_and_line_item_shapes_route() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let money_cases = [json!("16500.0"), json!(16500), json!(""), Value::Null];
    let line_item_cases = [None, Some(Value::Null), Some(json!([]))];

    let mut id = 100;
    for total in money_cases {
        id += 1;
        let body = payload(|root| {
            root.insert("id".into(), json!(id));
            set_field(root, "total_amount", total.clone());
        });
        let (status, response) = post(&app, &body).await;
        assert_eq!(status, 200, "total_amount {total}: {response}");
        assert_eq!(response["status"], "accepted", "total_amount {total}");
    }
    assert_eq!(stack.drain().await["accounting"].len(), 4);

    for items in line_item_cases {
        id += 1;
        let body = payload(|root| {
            root.insert("id".into(), json!(id));
            match &items {
                None => {
                    root.remove("line_items");
                }
                Some(value) => {
                    root.insert("line_items".into(), value.clone());
                }
            }
        });
        let (status, response) = post(&app, &body).await;
        assert_eq!(status, 200, "line_items {items:?}: {response}");
        let messages = stack.drain().await;
        let accounting = &messages["accounting"];
        assert_eq!(accounting.len(), 1, "line_items {items:?}");
        assert!(
            accounting[0]
                .decision
                .annotations
                .contains(&"single_line_bill".to_string())
        );
    }
}

#[tokio::test]
async fn chinese_text_is_routed_and_archived_intact() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let body = payload(|root| {
        root.insert("id".into(), json!(5));
        root.insert("filename".into(), json!("2024年 发票.pdf"));
        root.insert("original_filename".into(), json!("2024年 发票.pdf"));
        root.insert("contact_name".into(), json!("深圳市腾飞科技有限公司"));
        root.insert(
            "custom_fields".into(),
            json!({"采购订单号": "PO-7", "PO Number": "PO-8"}),
        );
        set_field(root, "vendor", json!("深圳市腾飞科技有限公司"));
    });

    let (status, response) = post(&app, &body).await;

    assert_eq!(status, 200, "{response}");
    let keys = stack.archived().await;
    assert_eq!(keys.len(), 1);
    let archived = stack
        .emulator
        .clients()
        .s3
        .get_object()
        .bucket(&stack.bucket)
        .key(&keys[0])
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(archived.as_ref(), body.as_bytes(), "archived byte for byte");

    let messages = stack.drain().await;
    let routed = messages["accounting"][0].payload.as_ref().unwrap();
    assert_eq!(
        routed.get("contact_name").and_then(Node::as_str),
        Some("深圳市腾飞科技有限公司")
    );
    assert_eq!(routed.get("filename").and_then(Node::as_str), Some("2024年 发票.pdf"));
    assert!(routed.get("custom_fields").and_then(|f| f.get("采购订单号")).is_some());
}

#[tokio::test]
async fn unknown_event_is_ignored() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let body =
        r#"{"schema_version": "2.0", "event": "audit.log", "timestamp": "2026-03-22T08:30:00Z", "action": "login"}"#;

    let (status, response) = post(&app, body).await;

    assert_eq!(status, 200);
    assert_eq!(response, json!({"status": "ignored", "event": "audit.log"}));
    assert_eq!(stack.archived().await.len(), 1, "ignored events are archived");
    assert!(destinations_with_messages(&stack.drain().await).is_empty());
}

#[tokio::test]
async fn bad_credentials_store_nothing() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let cases = [
        Some("Bearer re_wrong".to_owned()),
        None,
        Some("Basic dXNlcjpwYXNzd29yZA==".to_owned()),
        Some(format!("Token {TOKEN}")),
        Some("Bearer".to_owned()),
    ];

    for authorization in cases {
        let request = http_api_event(
            "/webhooks/recordengine",
            authorization.as_deref(),
            DOCUMENTED.as_bytes(),
            false,
        );
        let (status, response) = send(&app, request).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert_eq!(response["status"], "unauthorized");
    }
    let path_form = http_api_event(
        &format!("/webhooks/recordengine/{TOKEN}"),
        None,
        DOCUMENTED.as_bytes(),
        false,
    );
    assert_eq!(
        send(&app, path_form).await.0,
        401,
        "path secrets are off in bearer mode"
    );

    assert!(stack.archived().await.is_empty(), "nothing archived");
    assert!(
        destinations_with_messages(&stack.drain().await).is_empty(),
        "nothing queued"
    );
}

#[tokio::test]
async fn lowercase_scheme_and_whitespace_are_accepted() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let request = http_api_event(
        "/webhooks/recordengine",
        Some(&format!("bearer   {TOKEN} ")),
        plain_usd(6).as_bytes(),
        false,
    );
    let (status, response) = send(&app, request).await;

    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "accepted");
}

#[tokio::test]
async fn base64_body_matches_plain_body() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let plain = send(
        &app,
        http_api_event(
            "/webhooks/recordengine",
            Some(&bearer()),
            plain_usd(7).as_bytes(),
            false,
        ),
    )
    .await;
    let encoded = send(
        &app,
        http_api_event("/webhooks/recordengine", Some(&bearer()), plain_usd(8).as_bytes(), true),
    )
    .await;

    assert_eq!(plain.0, 200);
    assert_eq!(encoded.0, 200);
    assert_eq!(plain.1["routes"], encoded.1["routes"]);
    assert_eq!(encoded.1["document_id"], 8);

    // The same bytes base64-encoded are the same export.
    let again = send(
        &app,
        http_api_event("/webhooks/recordengine", Some(&bearer()), plain_usd(7).as_bytes(), true),
    )
    .await;
    assert_eq!(again.1["status"], "duplicate");
}

#[tokio::test]
async fn rest_api_and_function_url_events() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let rest = rest_api_event("POST", "/webhooks/recordengine", Some(&bearer()), Some(&plain_usd(9)));
    let (status, response) = send(&app, rest).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "accepted");

    let url = function_url_event(&bearer(), plain_usd(10).as_bytes());
    let (status, response) = send(&app, url).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["document_id"], 10);

    let staged = http_api_event(
        "/prod/webhooks/recordengine",
        Some(&bearer()),
        plain_usd(11).as_bytes(),
        false,
    );
    assert_eq!(send(&app, staged).await.0, 200);
}

#[tokio::test]
async fn malformed_bodies_get_400_and_are_archived() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);

    let (status, response) = post(&app, "{").await;
    assert_eq!(status, 400);
    assert_eq!(response["status"], "rejected");
    assert!(
        response["error"].as_str().unwrap().contains("not valid JSON"),
        "{response}"
    );

    let bad_total = payload(|root| set_field(root, "total_amount", json!("abc")));
    let (status, response) = post(&app, &bad_total).await;
    assert_eq!(status, 400);
    assert_eq!(
        response["error"],
        r#"extracted_fields.total_amount: expected a decimal, got "abc""#
    );

    let (status, _) = post(&app, "").await;
    assert_eq!(status, 400, "an empty body is rejected, not a 5xx");

    assert_eq!(stack.archived().await.len(), 3, "rejected bodies are kept for replay");
    assert!(destinations_with_messages(&stack.drain().await).is_empty());
}

#[tokio::test]
async fn oversized_body_gets_413_and_is_archived() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let large = payload(|root| {
        root.insert("ai_summary".into(), json!("x".repeat(70 * 1024)));
    });

    let (status, response) = post(&app, &large).await;

    assert_eq!(status, 413, "{response}");
    assert!(response["error"].as_str().unwrap().contains("MAX_BODY_BYTES"));
    assert_eq!(stack.archived().await.len(), 1);
    assert!(destinations_with_messages(&stack.drain().await).is_empty());
}

#[tokio::test]
async fn duplicate_exports_queue_once() {
    let stack = Stack::create(shared_emulator()).await;
    let app = Arc::new(stack.app(AuthMode::Bearer));
    let body = plain_usd(12);

    let first = post(&app, &body).await;
    let second = post(&app, &body).await;
    assert_eq!(first.1["status"], "accepted");
    assert_eq!(second.1["status"], "duplicate");
    assert_eq!(stack.drain().await["accounting"].len(), 1);

    // Two deliveries at the same moment: one wins the claim.
    let concurrent = plain_usd(13);
    let results = futures::future::join_all((0..2).map(|_| {
        let app = Arc::clone(&app);
        let body = concurrent.clone();
        async move { post(&app, &body).await }
    }))
    .await;
    let statuses: Vec<&str> = results
        .iter()
        .map(|(_, body)| body["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"accepted"), "{statuses:?}");
    assert!(statuses.contains(&"duplicate"), "{statuses:?}");
    assert_eq!(stack.drain().await["accounting"].len(), 1);
}

#[tokio::test]
async fn re_export_with_changed_total_routes_again() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let original = plain_usd(14);
    let changed = payload(|root| {
        root.insert("id".into(), json!(14));
        set_field(root, "currency", json!("USD"));
        set_field(root, "total_amount", json!("18600.0"));
    });

    post(&app, &original).await;
    let first = stack.drain().await["accounting"].clone();
    let (_, response) = post(&app, &changed).await;
    let second = stack.drain().await["accounting"].clone();

    assert_eq!(response["status"], "accepted");
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    assert_eq!(first[0].document_id, second[0].document_id);
    assert_ne!(first[0].fingerprint, second[0].fingerprint);
    assert_ne!(first[0].idempotency_key, second[0].idempotency_key);
}

#[tokio::test]
async fn correlates_with_the_upload_record() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    let store = DynamoDocumentStore::new(stack.emulator.clients().dynamodb, &stack.table);
    let upload = bridge_shared::records::UploadRecord {
        pk: bridge_shared::records::reference_pk("s3-corr-1"),
        sk: bridge_shared::records::DOCUMENT_SK.into(),
        origin: bridge_shared::records::Origin {
            correlation_key: "s3-corr-1".into(),
            bucket: Some("inbox".into()),
            key: Some("inbox/5/12/acme.pdf".into()),
            ..Default::default()
        },
        status: "ambiguous".into(),
        document_id: None,
        lease_until: None,
        last_error: Some("timed out after sending".into()),
        external_refs_sent: None,
        contact_id: Some(5),
        folder_id: Some(12),
        profile_id: None,
        filename: Some("acme.pdf".into()),
        updated_at: "2026-12-04T08:00:00.000Z".into(),
    };
    let item = bridge_shared::aws::to_item(&upload, "PutItem").unwrap();
    stack
        .emulator
        .clients()
        .dynamodb
        .put_item()
        .table_name(&stack.table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    let body = payload(|root| {
        root.insert("id".into(), json!(15));
        set_field(root, "currency", json!("USD"));
        root.insert(
            "external_refs".into(),
            json!({"recordengine_bridge": {"record_id": "s3-corr-1", "record_type": "s3_object"}, "salesforce": {"record_id": "x"}}),
        );
    });

    post(&app, &body).await;

    let messages = stack.drain().await;
    let origin = messages["accounting"][0]
        .origin
        .as_ref()
        .expect("origin found by correlation key");
    assert_eq!(origin.key.as_deref(), Some("inbox/5/12/acme.pdf"));
    let view = bridge_shared::ports::DocumentStore::document_view(&store, 15)
        .await
        .unwrap();
    assert_eq!(view.document.unwrap().origin.unwrap().correlation_key, "s3-corr-1");
    let kinds: Vec<&str> = view.timeline.iter().map(|entry| entry.kind.as_str()).collect();
    assert_eq!(kinds, vec!["exported", "routed"]);
}

#[tokio::test]
async fn document_endpoint_returns_record_and_timeline() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    post(&app, &plain_usd(16)).await;

    let found = send(&app, rest_api_event("GET", "/documents/16", Some(&bearer()), None)).await;
    assert_eq!(found.0, 200, "{}", found.1);
    assert_eq!(found.1["document"]["document_id"], 16);
    assert_eq!(found.1["timeline"].as_array().unwrap().len(), 2);
    assert_eq!(found.1["exports"][0]["status"], "routed");

    let missing = send(&app, rest_api_event("GET", "/documents/999999", Some(&bearer()), None)).await;
    assert_eq!(missing.0, 404);
    let invalid = send(&app, rest_api_event("GET", "/documents/abc", Some(&bearer()), None)).await;
    assert_eq!(invalid.0, 400);
    let unauthenticated = send(&app, rest_api_event("GET", "/documents/16", None, None)).await;
    assert_eq!(unauthenticated.0, 401);
}

#[tokio::test]
async fn path_secret_mode() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::PathSecret);

    let good = http_api_event(
        &format!("/webhooks/recordengine/{TOKEN}"),
        None,
        plain_usd(17).as_bytes(),
        false,
    );
    let (status, response) = send(&app, good).await;
    assert_eq!(status, 200, "{response}");

    let wrong = http_api_event("/webhooks/recordengine/guess", None, plain_usd(18).as_bytes(), false);
    assert_eq!(send(&app, wrong).await.0, 401);
    let bearer_only = http_api_event(
        "/webhooks/recordengine",
        Some(&bearer()),
        plain_usd(18).as_bytes(),
        false,
    );
    assert_eq!(
        send(&app, bearer_only).await.0,
        401,
        "bearer tokens are off in path-secret mode"
    );
}

#[tokio::test]
async fn rotated_token_works_without_redeploy() {
    let stack = Stack::create(shared_emulator()).await;
    let app = stack.app(AuthMode::Bearer);
    assert_eq!(post(&app, &plain_usd(19)).await.0, 200);

    stack
        .emulator
        .clients()
        .secrets
        .put_secret_value()
        .secret_id(&stack.secret_name)
        .secret_string("re_rotated")
        .send()
        .await
        .unwrap();
    // The verifier re-reads at most once every five seconds after a mismatch.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;

    let request = http_api_event(
        "/webhooks/recordengine",
        Some("Bearer re_rotated"),
        plain_usd(20).as_bytes(),
        false,
    );
    assert_eq!(send(&app, request).await.0, 200);
}

#[tokio::test]
async fn emulator_outage_gives_503_then_recovers() {
    // Its own emulator: this test stops it.
    let emulator: &'static Emulator = Box::leak(Box::new(Emulator::start()));
    let stack = Stack::create(emulator).await;
    let app = stack.app(AuthMode::Bearer);
    assert_eq!(post(&app, &plain_usd(21)).await.0, 200, "warm: the token is cached");

    emulator.stop();
    let (status, response) = post(&app, &plain_usd(22)).await;
    assert_eq!(status, 503, "{response}");
    assert_eq!(response["status"], "unavailable");

    // MiniStack keeps state in memory, so its restart comes back empty:
    // recreate the same resources, as a redeploy would.
    emulator.restart();
    emulator.create_bucket(&stack.bucket).await;
    emulator.create_table(&stack.table, true).await;
    for url in stack.queues.values() {
        let name = url.rsplit('/').next().unwrap();
        emulator.create_queue(name).await;
    }

    let (status, response) = post(&app, &plain_usd(22)).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "accepted");
    emulator.stop();
}
