//! The destination sinks, exercised over HTTP on 127.0.0.1.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use bridge_devstack::json::Json;
use bridge_devstack::sinks::wecom::MARKDOWN_MAX_BYTES;
use bridge_devstack::{
    GenericConfig, HubSpotConfig, QuickBooksConfig, ServerHandle, WeComConfig, XeroConfig, start_generic,
    start_hubspot, start_quickbooks, start_wecom, start_xero,
};
use common::{at, client, json_body, text_at};

/// Percent-encodes a query or form value.
fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Builds an `application/x-www-form-urlencoded` body.
fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post_fault(server: &ServerHandle, fault: serde_json::Value) {
    let response = client().post(server.url("/_faults")).json(&fault).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "fault rejected: {fault}");
}

async fn admin_json(server: &ServerHandle, path: &str) -> Json {
    json_body(client().get(server.url(path)).send().await.unwrap()).await
}

async fn recorded(server: &ServerHandle) -> Vec<Json> {
    at(&admin_json(server, "/_requests").await, "requests")
        .as_array()
        .unwrap()
        .to_vec()
}

// QuickBooks Online

const REALM: &str = "9130357766900000";

fn bill(doc_number: &str) -> String {
    format!(
        r#"{{"DocNumber": "{doc_number}", "VendorRef": {{"value": "56"}}, "TxnDate": "2023-03-20", "Line": [
            {{"DetailType": "AccountBasedExpenseLineDetail", "Amount": 262.90, "Description": "Furniture",
              "AccountBasedExpenseLineDetail": {{"AccountRef": {{"value": "7"}}}}}},
            {{"DetailType": "AccountBasedExpenseLineDetail", "Amount": 16.94,
              "AccountBasedExpenseLineDetail": {{"AccountRef": {{"value": "7"}}}}}}]}}"#
    )
}

async fn post_bill(server: &ServerHandle, request_id: &str, body: &str) -> reqwest::Response {
    client()
        .post(server.url(&format!(
            "/v3/company/{REALM}/bill?requestid={request_id}&minorversion=75"
        )))
        .bearer_auth("qbo-access")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn query_bills(server: &ServerHandle, query: &str) -> (StatusCode, Json) {
    let response = client()
        .get(server.url(&format!(
            "/v3/company/{REALM}/query?query={}&minorversion=75",
            encode(query)
        )))
        .bearer_auth("qbo-access")
        .send()
        .await
        .unwrap();
    (response.status(), json_body(response).await)
}

#[tokio::test]
async fn quickbooks_creates_bill() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();

    let response = post_bill(&server, "req-1", &bill("INV/2023/03/0008")).await;

    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains(r#""TotalAmt":279.84"#), "{text}");
    let body = Json::parse(&text).unwrap();
    assert_eq!(text_at(&body, "Bill.Id"), "1");
    assert_eq!(text_at(&body, "Bill.DocNumber"), "INV/2023/03/0008");
    assert_eq!(text_at(&body, "Bill.SyncToken"), "0");
    assert_eq!(text_at(&body, "Bill.VendorRef.value"), "56");
    assert!(body.get("time").is_some());
}

#[tokio::test]
async fn quickbooks_requires_bearer() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();

    let response = client()
        .post(server.url(&format!("/v3/company/{REALM}/bill")))
        .body(bill("A-1"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = json_body(response).await;
    assert_eq!(text_at(&body, "Fault.type"), "AuthenticationFault");
    assert_eq!(text_at(&body, "Fault.Error.0.code"), "3200");
}

#[tokio::test]
async fn quickbooks_validation_faults() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    let cases = [
        (r#"{"Line": []}"#, "VendorRef"),
        (r#"{"VendorRef": {"value": "56"}}"#, "Line"),
        (
            r#"{"VendorRef": {"value": "56"}, "Line": [{"DetailType": "ItemBasedExpenseLineDetail", "Amount": 5}]}"#,
            "Line.DetailType",
        ),
        (
            r#"{"VendorRef": {"value": "56"}, "Line": [{"DetailType": "AccountBasedExpenseLineDetail"}]}"#,
            "Line.Amount",
        ),
        (
            r#"{"VendorRef": {"value": "56"}, "Line": [{"DetailType": "AccountBasedExpenseLineDetail", "Amount": 5}]}"#,
            "AccountRef",
        ),
        (r#"[1]"#, "Bill"),
    ];

    for (index, (body, element)) in cases.iter().enumerate() {
        let response = post_bill(&server, &format!("bad-{index}"), body).await;

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "accepted {body}");
        let fault = json_body(response).await;
        assert_eq!(text_at(&fault, "Fault.type"), "ValidationFault", "for {body}");
        assert_eq!(text_at(&fault, "Fault.Error.0.element"), *element, "for {body}");
        assert!(fault.get("time").is_some());
    }

    let invalid_json = post_bill(&server, "bad-json", "{").await;
    assert_eq!(invalid_json.status(), StatusCode::BAD_REQUEST);
    let (_, all) = query_bills(&server, "select * from Bill").await;
    assert_eq!(at(&all, "QueryResponse"), &Json::Object(Vec::new()));
}

#[tokio::test]
async fn quickbooks_requestid_replays_response() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();

    let first = post_bill(&server, "same-id", &bill("A-1")).await.text().await.unwrap();
    let second = post_bill(&server, "same-id", &bill("A-1-changed"))
        .await
        .text()
        .await
        .unwrap();
    let third = json_body(post_bill(&server, "other-id", &bill("A-2")).await).await;

    assert_eq!(first, second);
    assert_eq!(text_at(&third, "Bill.Id"), "2");
    let (_, all) = query_bills(&server, "select * from Bill").await;
    assert_eq!(at(&all, "QueryResponse.Bill").as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn quickbooks_vendor_lookup_assigns_stable_ids() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();

    let (status, first) = query_bills(&server, "select * from Vendor where DisplayName = 'Azure Interior'").await;
    let (_, again) = query_bills(&server, "select * from Vendor where DisplayName = 'Azure Interior'").await;
    let (_, other) = query_bills(
        &server,
        "select * from Vendor where DisplayName = '深圳市腾飞科技有限公司'",
    )
    .await;
    let (bad_status, bad) = query_bills(&server, "select * from Vendor where Id = '1'").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_at(&first, "QueryResponse.Vendor.0.DisplayName"), "Azure Interior");
    assert_eq!(text_at(&first, "QueryResponse.Vendor.0.Id"), "5001");
    assert_eq!(text_at(&again, "QueryResponse.Vendor.0.Id"), "5001");
    assert_eq!(text_at(&other, "QueryResponse.Vendor.0.Id"), "5002");
    assert_eq!(bad_status, StatusCode::BAD_REQUEST);
    assert_eq!(text_at(&bad, "Fault.Error.0.code"), "4000");
}

#[tokio::test]
async fn quickbooks_query_by_doc_number() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    post_bill(&server, "r-1", &bill("INV/2023/03/0008")).await;
    post_bill(&server, "r-2", &bill("O'Brien-7")).await;

    let (status, found) = query_bills(&server, "select * from Bill where DocNumber = 'INV/2023/03/0008'").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(at(&found, "QueryResponse.Bill").as_array().unwrap().len(), 1);
    assert_eq!(text_at(&found, "QueryResponse.Bill.0.DocNumber"), "INV/2023/03/0008");

    let (_, escaped) = query_bills(&server, r"SELECT * FROM Bill WHERE DocNumber = 'O\'Brien-7'").await;
    assert_eq!(text_at(&escaped, "QueryResponse.Bill.0.Id"), "2");

    let (_, missing) = query_bills(&server, "select * from Bill where DocNumber = 'nope'").await;
    assert_eq!(at(&missing, "QueryResponse"), &Json::Object(Vec::new()));

    let (status, error) = query_bills(&server, "select * from Invoice").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(text_at(&error, "Fault.Error.0.code"), "4000");

    let read = client()
        .get(server.url(&format!("/v3/company/{REALM}/bill/1")))
        .bearer_auth("qbo-access")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let other_realm = client()
        .get(server.url("/v3/company/123/bill/1"))
        .bearer_auth("qbo-access")
        .send()
        .await
        .unwrap();
    assert_eq!(other_realm.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn quickbooks_throttling_fault() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    post_fault(
        &server,
        serde_json::json!({"status": 429, "retry_after": "37", "times": 2}),
    )
    .await;

    let mut statuses = Vec::new();
    for index in 0..3 {
        let response = post_bill(&server, &format!("t-{index}"), &bill("T-1")).await;
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "37");
            let body = json_body(response).await;
            assert_eq!(text_at(&body, "Fault.type"), "ThrottlingFault");
            assert_eq!(text_at(&body, "Fault.Error.0.code"), "3001");
            assert_eq!(
                text_at(&body, "Fault.Error.0.Message"),
                "message=ThrottleExceeded; errorCode=003001; statusCode=429"
            );
        }
    }

    assert_eq!(statuses, vec![429, 429, 200]);
    let requests = recorded(&server).await;
    assert_eq!(requests.len(), 3);
    assert_eq!(at(&requests[0], "fault_status"), &Json::from(429_u64));
    assert!(at(&requests[2], "fault_status").is_null());
}

#[tokio::test]
async fn quickbooks_counts_max_concurrency() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    post_fault(&server, serde_json::json!({"status": 0, "delay_ms": 500, "times": 4})).await;

    let requests = (0..4).map(|index| {
        let server = &server;
        async move {
            post_bill(server, &format!("c-{index}"), &bill(&format!("C-{index}")))
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(requests).await;

    assert!(statuses.iter().all(|status| *status == StatusCode::OK), "{statuses:?}");
    let stats = admin_json(&server, "/_stats").await;
    assert_eq!(at(&stats, "max_concurrent"), &Json::from(4_u64));
    assert_eq!(at(&stats, "requests"), &Json::from(4_u64));
    assert_eq!(at(&stats, "in_flight"), &Json::from(0_u64));

    let reset = client().delete(server.url("/_stats")).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let stats = admin_json(&server, "/_stats").await;
    assert_eq!(at(&stats, "max_concurrent"), &Json::from(0_u64));
}

#[tokio::test]
async fn requests_are_recorded_without_secrets() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    post_bill(&server, "rec-1", &bill("R-1")).await;

    let requests = recorded(&server).await;

    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(text_at(request, "method"), "POST");
    assert_eq!(text_at(request, "path"), format!("/v3/company/{REALM}/bill"));
    assert_eq!(text_at(request, "query.requestid"), "rec-1");
    assert_eq!(text_at(request, "query.minorversion"), "75");
    assert_eq!(at(request, "authorization.present"), &Json::Bool(true));
    assert_eq!(text_at(request, "authorization.scheme"), "Bearer");
    assert!(request.get("headers").unwrap().get("authorization").is_none());
    assert!(!request.to_compact_string().contains("qbo-access"));
    assert_eq!(text_at(request, "headers.content-type"), "application/json");
    assert_eq!(at(request, "body.Line.0.Amount"), &Json::Number("262.90".into()));
    assert_eq!(at(request, "response_status"), &Json::from(200_u64));
    assert!(chrono::DateTime::parse_from_rfc3339(text_at(request, "at")).is_ok());

    let cleared = client().delete(server.url("/_requests")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert!(recorded(&server).await.is_empty());
}

#[tokio::test]
async fn quickbooks_refresh_token_rotates() {
    let server = start_quickbooks(QuickBooksConfig::default()).await.unwrap();
    let seeded = client()
        .post(server.url("/_oauth/seed"))
        .json(&serde_json::json!({"refresh_token": "qbo-seed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::OK);

    let refresh = |token: &str| {
        client()
            .post(server.url("/oauth2/v1/tokens/bearer"))
            .basic_auth("client-id", Some("client-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("grant_type", "refresh_token"), ("refresh_token", token)]))
            .send()
    };
    let first = refresh("qbo-seed").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let tokens = json_body(first).await;
    assert_eq!(text_at(&tokens, "token_type"), "bearer");
    assert_eq!(at(&tokens, "expires_in"), &Json::from(3600_u64));
    let next = text_at(&tokens, "refresh_token").to_owned();
    let access = text_at(&tokens, "access_token").to_owned();
    assert_ne!(next, "qbo-seed");

    let reused = refresh("qbo-seed").await.unwrap();
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(text_at(&json_body(reused).await, "error"), "invalid_grant");
    assert_eq!(refresh(&next).await.unwrap().status(), StatusCode::OK);

    let with_old_access = client()
        .post(server.url(&format!("/v3/company/{REALM}/bill")))
        .bearer_auth(&access)
        .body(bill("O-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_old_access.status(),
        StatusCode::OK,
        "access tokens stay valid until they expire"
    );
    let unknown = post_bill(&server, "u-1", &bill("U-1")).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);

    let stats = admin_json(&server, "/_stats").await;
    assert_eq!(at(&stats, "oauth.refreshes"), &Json::from(2_u64));
    assert_eq!(at(&stats, "oauth.rejected_refreshes"), &Json::from(1_u64));
    assert!(
        recorded(&server)
            .await
            .iter()
            .all(|request| text_at(request, "path") != "/oauth2/v1/tokens/bearer")
    );
}

// Xero

const TENANT: &str = "a3f7c2e1-1111-4c4c-9f9f-000000000001";

fn xero_bill(number: &str) -> serde_json::Value {
    serde_json::json!({"Invoices": [{
        "Type": "ACCPAY",
        "Contact": {"Name": "Azure Interior"},
        "Date": "2023-03-20",
        "DueDate": "2023-04-04",
        "Status": "AUTHORISED",
        "CurrencyCode": "USD",
        "InvoiceNumber": number,
        "Reference": "RecordEngine 1001",
        "LineAmountTypes": "Exclusive",
        "LineItems": [{"Description": "Office Chair", "Quantity": 2, "UnitAmount": "35.00", "AccountCode": "400", "TaxAmount": "10.50"}]
    }]})
}

fn xero_request(server: &ServerHandle, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    client()
        .request(method, server.url(path))
        .bearer_auth("xero-access")
        .header("xero-tenant-id", TENANT)
}

async fn xero_invoices(server: &ServerHandle, where_clause: &str) -> Json {
    let path = format!("/api.xro/2.0/Invoices?where={}", encode(where_clause));
    let response = xero_request(server, reqwest::Method::GET, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    json_body(response).await
}

#[tokio::test]
async fn xero_creates_bill() {
    let server = start_xero(XeroConfig::default()).await.unwrap();

    let response = xero_request(&server, reqwest::Method::PUT, "/api.xro/2.0/Invoices")
        .json(&xero_bill("INV-1"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    let invoice_id = text_at(&body, "Invoices.0.InvoiceID");
    assert!(uuid::Uuid::parse_str(invoice_id).is_ok(), "{invoice_id}");
    assert_ne!(invoice_id, "00000000-0000-0000-0000-000000000000");
    assert_eq!(at(&body, "Invoices.0.HasErrors"), &Json::Bool(false));
    assert_eq!(text_at(&body, "Invoices.0.InvoiceNumber"), "INV-1");
    assert_eq!(text_at(&body, "Invoices.0.Status"), "AUTHORISED");
    assert_eq!(at(&body, "Invoices.0.SubTotal"), &Json::Number("70.00".into()));
    assert_eq!(at(&body, "Invoices.0.Total"), &Json::Number("80.50".into()));
    assert!(text_at(&body, "Invoices.0.Date").starts_with("/Date("));

    let found = xero_invoices(&server, r#"InvoiceNumber=="INV-1""#).await;
    assert_eq!(at(&found, "Invoices").as_array().unwrap().len(), 1);
    let none = xero_invoices(&server, r#"InvoiceNumber=="INV-404""#).await;
    assert_eq!(at(&none, "Invoices"), &Json::Array(Vec::new()));

    let bad_where = xero_request(
        &server,
        reqwest::Method::GET,
        "/api.xro/2.0/Invoices?where=Total%3D%3D5",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(bad_where.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn xero_requires_tenant_and_token() {
    let server = start_xero(XeroConfig::default()).await.unwrap();

    let no_tenant = client()
        .put(server.url("/api.xro/2.0/Invoices"))
        .bearer_auth("xero-access")
        .json(&xero_bill("INV-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_tenant.status(), StatusCode::FORBIDDEN);

    let no_token = client()
        .put(server.url("/api.xro/2.0/Invoices"))
        .header("xero-tenant-id", TENANT)
        .json(&xero_bill("INV-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn xero_validation_errors() {
    let server = start_xero(XeroConfig::default()).await.unwrap();
    let mut receivable = xero_bill("INV-2");
    receivable["Invoices"][0]["Type"] = "ACCREC".into();
    let mut no_lines = xero_bill("INV-3");
    no_lines["Invoices"][0]["LineItems"] = serde_json::json!([]);

    for body in [&receivable, &no_lines] {
        let summarised = xero_request(&server, reqwest::Method::PUT, "/api.xro/2.0/Invoices")
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(summarised.status(), StatusCode::BAD_REQUEST, "accepted {body}");
        let error = json_body(summarised).await;
        assert_eq!(text_at(&error, "Type"), "ValidationException");
        assert!(!at(&error, "Elements.0.ValidationErrors").as_array().unwrap().is_empty());

        let per_item = xero_request(
            &server,
            reqwest::Method::PUT,
            "/api.xro/2.0/Invoices?summarizeErrors=false",
        )
        .json(body)
        .send()
        .await
        .unwrap();
        assert_eq!(per_item.status(), StatusCode::OK);
        let result = json_body(per_item).await;
        assert_eq!(at(&result, "Invoices.0.HasErrors"), &Json::Bool(true));
        assert_eq!(
            text_at(&result, "Invoices.0.InvoiceID"),
            "00000000-0000-0000-0000-000000000000"
        );
    }

    let invalid_json = xero_request(&server, reqwest::Method::PUT, "/api.xro/2.0/Invoices")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(invalid_json.status(), StatusCode::BAD_REQUEST);
    let all = xero_request(&server, reqwest::Method::GET, "/api.xro/2.0/Invoices")
        .send()
        .await
        .unwrap();
    assert_eq!(at(&json_body(all).await, "Invoices"), &Json::Array(Vec::new()));
}

#[tokio::test]
async fn xero_idempotency_key_replays() {
    let server = start_xero(XeroConfig::default()).await.unwrap();
    let send = |key: &'static str, number: &'static str| {
        xero_request(&server, reqwest::Method::POST, "/api.xro/2.0/Invoices")
            .header("Idempotency-Key", key)
            .json(&xero_bill(number))
            .send()
    };

    let first = json_body(send("key-1", "INV-1").await.unwrap()).await;
    let repeat = json_body(send("key-1", "INV-1").await.unwrap()).await;
    let other = json_body(send("key-2", "INV-1").await.unwrap()).await;

    assert_eq!(first, repeat);
    assert_ne!(
        text_at(&first, "Invoices.0.InvoiceID"),
        text_at(&other, "Invoices.0.InvoiceID")
    );
    let found = xero_invoices(&server, r#"InvoiceNumber=="INV-1""#).await;
    assert_eq!(at(&found, "Invoices").as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn xero_has_errors_injection() {
    let server = start_xero(XeroConfig::default()).await.unwrap();
    post_fault(
        &server,
        serde_json::json!({"status": 200, "body": {"Invoices": [{
            "InvoiceID": "00000000-0000-0000-0000-000000000000",
            "HasErrors": true,
            "ValidationErrors": [{"Message": "Account code '400' is not a valid code for this document."}]
        }]}}),
    )
    .await;

    let injected = xero_request(&server, reqwest::Method::PUT, "/api.xro/2.0/Invoices")
        .json(&xero_bill("INV-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), StatusCode::OK);
    let body = json_body(injected).await;
    assert_eq!(at(&body, "Invoices.0.HasErrors"), &Json::Bool(true));
    assert!(text_at(&body, "Invoices.0.ValidationErrors.0.Message").contains("Account code"));

    let normal = xero_request(&server, reqwest::Method::PUT, "/api.xro/2.0/Invoices")
        .json(&xero_bill("INV-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(at(&json_body(normal).await, "Invoices.0.HasErrors"), &Json::Bool(false));
}

#[tokio::test]
async fn xero_rate_limit_has_retry_after() {
    let server = start_xero(XeroConfig::default()).await.unwrap();
    post_fault(&server, serde_json::json!({"status": 429, "retry_after": "37"})).await;

    let response = xero_request(&server, reqwest::Method::PUT, "/api.xro/2.0/Invoices")
        .json(&xero_bill("INV-1"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "37");
    assert_eq!(response.headers()["x-rate-limit-problem"], "minute");
}

#[tokio::test]
async fn xero_refresh_token_rotation() {
    let server = start_xero(XeroConfig::default()).await.unwrap();
    let seeded = client()
        .post(server.url("/_oauth/seed"))
        .json(&serde_json::json!({"refresh_token": "xero-seed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::OK);
    let refresh = |token: String| {
        client()
            .post(server.url("/connect/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("grant_type", "refresh_token"), ("refresh_token", &token)]))
            .send()
    };

    let first = refresh("xero-seed".into()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let tokens = json_body(first).await;
    assert_eq!(at(&tokens, "expires_in"), &Json::from(1800_u64));
    assert_eq!(text_at(&tokens, "token_type"), "Bearer");
    let access = text_at(&tokens, "access_token").to_owned();
    let rotated = text_at(&tokens, "refresh_token").to_owned();
    assert_ne!(rotated, "xero-seed");

    let reused = refresh("xero-seed".into()).await.unwrap();
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(text_at(&json_body(reused).await, "error"), "invalid_grant");
    let second = refresh(rotated.clone()).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let reused_rotated = refresh(rotated).await.unwrap();
    assert_eq!(reused_rotated.status(), StatusCode::BAD_REQUEST);

    // Only issued access tokens pass once a token is seeded.
    let put = |token: String| {
        client()
            .put(server.url("/api.xro/2.0/Invoices"))
            .bearer_auth(token)
            .header("xero-tenant-id", TENANT)
            .json(&xero_bill("INV-9"))
            .send()
    };
    assert_eq!(put("made-up".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(put(access.clone()).await.unwrap().status(), StatusCode::OK);
    let expired = client().post(server.url("/_oauth/expire")).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::NO_CONTENT);
    assert_eq!(put(access).await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let stats = admin_json(&server, "/_stats").await;
    assert_eq!(at(&stats, "oauth.refreshes"), &Json::from(2_u64));
    assert_eq!(at(&stats, "oauth.rejected_refreshes"), &Json::from(2_u64));
    assert_eq!(at(&stats, "oauth.seeded"), &Json::Bool(true));
}

#[tokio::test]
async fn token_endpoint_rejects_bad_requests() {
    let server = start_xero(XeroConfig::default()).await.unwrap();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("grant_type", "client_credentials")], "unsupported_grant_type"),
        (&[("grant_type", "refresh_token")], "invalid_request"),
        (&[("refresh_token", "abc")], "invalid_request"),
    ];

    for (form, error) in cases {
        let response = client()
            .post(server.url("/connect/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "accepted {form:?}");
        assert_eq!(text_at(&json_body(response).await, "error"), error, "for {form:?}");
    }

    let bad_seed = client()
        .post(server.url("/_oauth/seed"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_seed.status(), StatusCode::BAD_REQUEST);
}

// HubSpot

async fn patch_deal(server: &ServerHandle, path: &str, body: &str) -> reqwest::Response {
    client()
        .patch(server.url(path))
        .bearer_auth("hubspot-token")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn hubspot_updates_properties() {
    let server = start_hubspot(HubSpotConfig::default()).await.unwrap();

    let response = patch_deal(
        &server,
        "/crm/v3/objects/deals/123",
        r#"{"properties": {"amount": 279.84, "recordengine_status": "Export", "closed": true, "note": null}}"#,
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    assert_eq!(text_at(&body, "id"), "123");
    assert_eq!(text_at(&body, "properties.amount"), "279.84");
    assert_eq!(text_at(&body, "properties.recordengine_status"), "Export");
    assert_eq!(text_at(&body, "properties.closed"), "true");
    assert_eq!(text_at(&body, "properties.note"), "");
    assert!(chrono::DateTime::parse_from_rfc3339(text_at(&body, "updatedAt")).is_ok());

    let read = client()
        .get(server.url("/crm/v3/objects/deals/123"))
        .bearer_auth("hubspot-token")
        .send()
        .await
        .unwrap();
    assert_eq!(text_at(&json_body(read).await, "properties.amount"), "279.84");
}

#[tokio::test]
async fn hubspot_rejects_bad_requests() {
    let server = start_hubspot(HubSpotConfig::default()).await.unwrap();

    let unauthenticated = client()
        .patch(server.url("/crm/v3/objects/deals/1"))
        .body(r#"{"properties": {}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    for body in ["{", r#"{"amount": 5}"#, r#"{"properties": {"nested": {"a": 1}}}"#] {
        let response = patch_deal(&server, "/crm/v3/objects/deals/1", body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "accepted {body}");
        assert_eq!(text_at(&json_body(response).await, "category"), "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn hubspot_known_records_only() {
    let server = start_hubspot(HubSpotConfig {
        known_records: Some(vec![("deals".into(), "42".into())]),
        ..HubSpotConfig::default()
    })
    .await
    .unwrap();

    let known = patch_deal(&server, "/crm/v3/objects/deals/42", r#"{"properties": {"a": "1"}}"#).await;
    assert_eq!(known.status(), StatusCode::OK);
    let unknown = patch_deal(&server, "/crm/v3/objects/deals/43", r#"{"properties": {"a": "1"}}"#).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(text_at(&json_body(unknown).await, "category"), "OBJECT_NOT_FOUND");

    let added = client()
        .post(server.url("/_records"))
        .body(r#"{"records": [{"object_type": "deals", "id": "77", "properties": {"po_number": "PO-9", "amount": 5.50}}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let by_property = patch_deal(
        &server,
        "/crm/v3/objects/deals/PO-9?idProperty=po_number",
        r#"{"properties": {"a": "2"}}"#,
    )
    .await;
    assert_eq!(by_property.status(), StatusCode::OK);
    let record = json_body(by_property).await;
    assert_eq!(text_at(&record, "id"), "77");
    assert_eq!(text_at(&record, "properties.amount"), "5.50");

    let reset = client().delete(server.url("/_records")).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let any = patch_deal(&server, "/crm/v3/objects/deals/43", r#"{"properties": {"a": "1"}}"#).await;
    assert_eq!(any.status(), StatusCode::OK);
}

#[tokio::test]
async fn hubspot_rate_limit_headers() {
    let server = start_hubspot(HubSpotConfig::default()).await.unwrap();
    post_fault(&server, serde_json::json!({"status": 429, "retry_after": "2"})).await;

    let response = patch_deal(&server, "/crm/v3/objects/deals/1", r#"{"properties": {}}"#).await;

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(response.headers()["x-hubspot-ratelimit-remaining"], "0");
    assert_eq!(response.headers()["x-hubspot-ratelimit-max"], "100");
    assert_eq!(text_at(&json_body(response).await, "errorType"), "RATE_LIMIT");
}

// Generic JSON

#[tokio::test]
async fn generic_creates_with_idempotency() {
    let server = start_generic(GenericConfig::default()).await.unwrap();
    let post = |key: Option<&'static str>, body: &'static str| {
        let request = client()
            .post(server.url("/bills"))
            .header("content-type", "application/json")
            .body(body);
        match key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        }
        .send()
    };

    let first = post(Some("k-1"), r#"{"total": "279.84"}"#).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(json_body(first).await.to_compact_string(), r#"{"id":"1"}"#);
    let replay = post(Some("k-1"), r#"{"total": "1"}"#).await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(json_body(replay).await.to_compact_string(), r#"{"id":"1"}"#);
    let without_key = post(None, r#"{"total": "2"}"#).await.unwrap();
    assert_eq!(json_body(without_key).await.to_compact_string(), r#"{"id":"2"}"#);
    let invalid = post(None, "not json").await.unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);

    let listed = admin_json(&server, "/bills").await;
    assert_eq!(at(&listed, "items").as_array().unwrap().len(), 2);
    assert_eq!(text_at(&listed, "items.0.body.total"), "279.84");

    let delete = client().delete(server.url("/bills")).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn generic_fault_delay_then_success() {
    let server = start_generic(GenericConfig::default()).await.unwrap();
    post_fault(&server, serde_json::json!({"status": 0, "delay_ms": 800})).await;

    let timed_out = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .post(server.url("/bills"))
        .header("Idempotency-Key", "slow-1")
        .body(r#"{"n": 1}"#)
        .send()
        .await;
    assert!(timed_out.is_err_and(|error| error.is_timeout()));

    // The first request was handled before the delay, so the retry replays it.
    let retry = client()
        .post(server.url("/bills"))
        .header("Idempotency-Key", "slow-1")
        .body(r#"{"n": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(json_body(retry).await.to_compact_string(), r#"{"id":"1"}"#);
}

// WeCom

async fn robot_send(server: &ServerHandle, key: &str, body: serde_json::Value) -> reqwest::Response {
    client()
        .post(server.url(&format!("/cgi-bin/webhook/send?key={}", encode(key))))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn markdown(content: &str) -> serde_json::Value {
    serde_json::json!({"msgtype": "markdown", "markdown": {"content": content}})
}

async fn errcode_of(response: reqwest::Response) -> i64 {
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the robot webhook always returns HTTP 200"
    );
    at(&json_body(response).await, "errcode").as_i64().unwrap()
}

#[tokio::test]
async fn wecom_accepts_markdown() {
    let server = start_wecom(WeComConfig::default()).await.unwrap();
    let content = "**发票已导出** 深圳市南岭云计算科技有限公司 ¥16430.00";

    let response = robot_send(&server, "any-key", markdown(content)).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_body(response).await.to_compact_string(),
        r#"{"errcode":0,"errmsg":"ok"}"#
    );
    let messages = admin_json(&server, "/_messages").await;
    assert_eq!(text_at(&messages, "messages.0.content"), content);
    assert_eq!(at(&messages, "messages.0.bytes"), &Json::from(content.len() as u64));
    assert_eq!(text_at(&messages, "messages.0.msgtype"), "markdown");

    let text = robot_send(
        &server,
        "any-key",
        serde_json::json!({"msgtype": "text", "text": {"content": "hi"}}),
    )
    .await;
    assert_eq!(errcode_of(text).await, 0);
}

#[tokio::test]
async fn wecom_unknown_key_is_93000() {
    let server = start_wecom(WeComConfig {
        keys: Some(vec!["good-key".into()]),
        ..WeComConfig::default()
    })
    .await
    .unwrap();

    assert_eq!(
        errcode_of(robot_send(&server, "bad-key", markdown("x")).await).await,
        93000
    );
    assert_eq!(errcode_of(robot_send(&server, "", markdown("x")).await).await, 93000);
    assert_eq!(
        errcode_of(robot_send(&server, "good-key", markdown("x")).await).await,
        0
    );
}

#[tokio::test]
async fn wecom_markdown_limit_is_4096_bytes() {
    let server = start_wecom(WeComConfig::default()).await.unwrap();
    // Three-byte characters: 1365 of them plus one ASCII byte are exactly 4096 bytes.
    let at_limit = format!("{}x", "票".repeat(1365));
    let over_limit = format!("{at_limit}y");
    assert_eq!(at_limit.len(), MARKDOWN_MAX_BYTES);

    assert_eq!(errcode_of(robot_send(&server, "k", markdown(&at_limit)).await).await, 0);
    assert_eq!(
        errcode_of(robot_send(&server, "k", markdown(&over_limit)).await).await,
        40058
    );

    let long_text = serde_json::json!({"msgtype": "text", "text": {"content": "a".repeat(2049)}});
    assert_eq!(errcode_of(robot_send(&server, "k", long_text).await).await, 40058);

    let messages = admin_json(&server, "/_messages").await;
    assert_eq!(at(&messages, "messages.1.bytes"), &Json::from(4097_u64));
    assert_eq!(at(&messages, "messages.1.errcode"), &Json::from(40058_i64));
}

#[tokio::test]
async fn wecom_injected_errcodes_are_counted() {
    let server = start_wecom(WeComConfig::default()).await.unwrap();
    post_fault(&server, serde_json::json!({"errcode": 45009, "times": 2})).await;

    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(errcode_of(robot_send(&server, "k", markdown("alert")).await).await);
    }

    assert_eq!(codes, vec![45009, 45009, 0]);
    let messages = admin_json(&server, "/_messages").await;
    assert_eq!(
        at(&messages, "messages").as_array().unwrap().len(),
        1,
        "faulted messages are not delivered"
    );
}

#[tokio::test]
async fn wecom_rejects_malformed_messages() {
    let server = start_wecom(WeComConfig::default()).await.unwrap();

    let not_json = client()
        .post(server.url("/cgi-bin/webhook/send?key=k"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(errcode_of(not_json).await, 40035);
    let unknown_type = robot_send(&server, "k", serde_json::json!({"msgtype": "video"})).await;
    assert_eq!(errcode_of(unknown_type).await, 40008);
    let empty = robot_send(&server, "k", markdown("")).await;
    assert_eq!(errcode_of(empty).await, 44004);

    let cleared = client().delete(server.url("/_messages")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    let messages = admin_json(&server, "/_messages").await;
    assert_eq!(at(&messages, "messages"), &Json::Array(Vec::new()));
}

#[tokio::test]
async fn sink_fault_admin_guards() {
    let server = start_wecom(WeComConfig::default()).await.unwrap();

    for body in [
        r#"{"status": 1000}"#,
        r#"{"delay_ms": "5"}"#,
        r#"{"errcode": "x"}"#,
        "null",
    ] {
        let response = client().post(server.url("/_faults")).body(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "accepted {body}");
    }

    post_fault(&server, serde_json::json!({"errcode": -1, "times": 5})).await;
    let pending = admin_json(&server, "/_faults").await;
    assert_eq!(at(&pending, "faults.0.remaining"), &Json::from(5_u64));
    let cleared = client().delete(server.url("/_faults")).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(errcode_of(robot_send(&server, "k", markdown("x")).await).await, 0);
}
