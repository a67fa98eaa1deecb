//! QuickBooks Online Accounting API sink: bills, bill queries and the Intuit token endpoint.
//!
//! Routes (realm ids are free text; every realm starts empty):
//! - `POST /v3/company/{realmId}/bill?requestid=<id>&minorversion=<n>` creates a bill.
//! - `GET /v3/company/{realmId}/bill/{id}` reads one.
//! - `GET /v3/company/{realmId}/query?query=select * from Bill where DocNumber = '...'`.
//! - `GET /v3/company/{realmId}/query?query=select * from Vendor where DisplayName = '...'`:
//!   every display name exists, so each new name gets the next vendor id (from 5001).
//! - `POST /oauth2/v1/tokens/bearer` refreshes tokens (see [`crate::sinks::oauth`]).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Utc;
use rust_decimal::Decimal;

use crate::faults::Fault;
use crate::json::Json;
use crate::server::{ServerHandle, ShutdownTrigger, serve};
use crate::sinks::core::SinkCore;
use crate::sinks::oauth::{AccessCheck, OAuthStore, TokenFlavor};
use crate::util::{bearer_token, json_response, now_rfc3339_millis, query_param};

/// The path of Intuit's OAuth 2.0 token endpoint.
pub const QUICKBOOKS_TOKEN_PATH: &str = "/oauth2/v1/tokens/bearer";

/// Settings of the QuickBooks sink.
#[derive(Debug, Clone, Default)]
pub struct QuickBooksConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

/// Starts the QuickBooks sink on the current tokio runtime.
pub async fn start_quickbooks(config: QuickBooksConfig) -> io::Result<ServerHandle> {
    let oauth = Arc::new(OAuthStore::new(TokenFlavor::Intuit));
    let books = Arc::new(QuickBooks {
        oauth: oauth.clone(),
        ledger: Mutex::new(Ledger::default()),
    });
    let core =
        Arc::new(SinkCore::new("quickbooks", 500, render_fault).with_oauth(QUICKBOOKS_TOKEN_PATH, oauth.clone()));

    let api = Router::new()
        .route("/v3/company/{realm_id}/bill", post(create_bill))
        .route("/v3/company/{realm_id}/bill/{bill_id}", get(read_bill))
        .route("/v3/company/{realm_id}/query", get(query))
        .with_state(books)
        .merge(oauth.token_route(QUICKBOOKS_TOKEN_PATH));

    let (trigger, signal) = ShutdownTrigger::new();
    serve("quickbooks", config.port, core.into_router(api), trigger, signal).await
}

struct QuickBooks {
    oauth: Arc<OAuthStore>,
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    /// Ids are assigned across all realms, starting at 1.
    last_id: u64,
    /// `(realm id, bill)` in creation order.
    bills: Vec<(String, Json)>,
    /// The first response to each `(realm id, requestid)`.
    responses: HashMap<(String, String), (StatusCode, Json)>,
    /// Vendor ids by `(realm id, display name)`, assigned on first lookup.
    vendors: HashMap<(String, String), String>,
}

impl QuickBooks {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Each handler updates the ledger in one critical section, so a poisoned lock holds consistent data.
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        match self.oauth.check_access(bearer_token(headers)) {
            AccessCheck::Accepted => Ok(()),
            AccessCheck::Missing | AccessCheck::Unknown | AccessCheck::Expired => {
                let (status, body) = fault_outcome(
                    StatusCode::UNAUTHORIZED,
                    "AuthenticationFault",
                    FaultError {
                        message: "message=AuthenticationFailed; errorCode=003200; statusCode=401".into(),
                        detail: None,
                        code: "3200".into(),
                        element: None,
                    },
                );
                Err(Box::new(json_response(status, &body)))
            }
        }
    }
}

/// One element of a QuickBooks `Fault.Error` list.
struct FaultError {
    message: String,
    detail: Option<String>,
    code: String,
    element: Option<String>,
}

/// A QuickBooks status and body, such as `{"Fault": {"Error": [...], "type": ...}, "time": ...}`.
type Outcome = (StatusCode, Json);

fn fault_outcome(status: StatusCode, fault_type: &str, error: FaultError) -> Outcome {
    let mut entry = Json::object([("Message", Json::from(error.message))]);
    if let Some(detail) = error.detail {
        entry.insert("Detail", Json::from(detail));
    }
    entry.insert("code", Json::from(error.code));
    if let Some(element) = error.element {
        entry.insert("element", Json::from(element));
    }
    let body = Json::object([
        (
            "Fault",
            Json::object([("Error", Json::Array(vec![entry])), ("type", Json::from(fault_type))]),
        ),
        ("time", Json::from(now_rfc3339_millis())),
    ]);
    (status, body)
}

fn validation_fault(detail: String, element: &str) -> Outcome {
    fault_outcome(
        StatusCode::BAD_REQUEST,
        "ValidationFault",
        FaultError {
            message: "Required param missing, need to supply the required value for the API".into(),
            detail: Some(detail),
            code: "2020".into(),
            element: Some(element.into()),
        },
    )
}

fn render_fault(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = |default: &str| {
        fault
            .errcode
            .map_or_else(|| default.to_owned(), |code| code.to_string())
    };
    let (fault_type, error) = match status.as_u16() {
        429 => (
            "ThrottlingFault",
            FaultError {
                message: "message=ThrottleExceeded; errorCode=003001; statusCode=429".into(),
                detail: None,
                code: code("3001"),
                element: None,
            },
        ),
        401 | 403 => (
            "AuthenticationFault",
            FaultError {
                message: format!(
                    "message=AuthenticationFailed; errorCode=003200; statusCode={}",
                    status.as_u16()
                ),
                detail: None,
                code: code("3200"),
                element: None,
            },
        ),
        400..=499 => (
            "ValidationFault",
            FaultError {
                message: "A business validation error has occurred while processing your request".into(),
                detail: Some("Business Validation Error: injected by the devstack sink".into()),
                code: code("6000"),
                element: None,
            },
        ),
        _ => (
            "SystemFault",
            FaultError {
                message: "An application error has occurred while processing your request".into(),
                detail: Some("System Failure Error: injected by the devstack sink".into()),
                code: code("10000"),
                element: None,
            },
        ),
    };
    let (status, body) = fault_outcome(status, fault_type, error);
    json_response(status, &body)
}

/// Checks the fields QuickBooks requires on a bill and returns the total of its line amounts.
fn validate_bill(body: &Json) -> Result<Decimal, Outcome> {
    if !body.is_object() {
        return Err(validation_fault(
            format!("The request body must be a Bill object, got {}", body.type_name()),
            "Bill",
        ));
    }

    let vendor_ok = body
        .get("VendorRef")
        .and_then(|vendor| vendor.get("value"))
        .and_then(Json::scalar_text)
        .is_some_and(|value| !value.trim().is_empty());
    if !vendor_ok {
        return Err(validation_fault(
            "Required parameter VendorRef is missing in the request".into(),
            "VendorRef",
        ));
    }

    let Some(lines) = body
        .get("Line")
        .and_then(Json::as_array)
        .filter(|lines| !lines.is_empty())
    else {
        return Err(validation_fault(
            "Required parameter Line is missing in the request".into(),
            "Line",
        ));
    };

    let mut total = Decimal::ZERO;
    let mut expense_lines = 0;
    for (index, line) in lines.iter().enumerate() {
        let amount = line.get("Amount").and_then(Json::as_decimal).ok_or_else(|| {
            validation_fault(
                format!("Required parameter Line[{index}].Amount is missing or not a number"),
                "Line.Amount",
            )
        })?;
        total += amount;

        if line.get("DetailType").and_then(Json::as_str) == Some("AccountBasedExpenseLineDetail") {
            // QuickBooks also requires the expense account on every account-based line.
            let account_ok = line
                .get("AccountBasedExpenseLineDetail")
                .and_then(|detail| detail.get("AccountRef"))
                .and_then(|account| account.get("value"))
                .and_then(Json::scalar_text)
                .is_some_and(|value| !value.trim().is_empty());
            if !account_ok {
                return Err(validation_fault(
                    format!(
                        "Required parameter Line[{index}].AccountBasedExpenseLineDetail.AccountRef is missing in the request"
                    ),
                    "AccountRef",
                ));
            }
            expense_lines += 1;
        }
    }
    if expense_lines == 0 {
        return Err(validation_fault(
            "At least one Line with DetailType AccountBasedExpenseLineDetail is required".into(),
            "Line.DetailType",
        ));
    }
    Ok(total)
}

/// Builds the stored bill from a valid request body.
fn build_bill(body: &Json, id: u64, total: Decimal) -> Json {
    let now = now_rfc3339_millis();
    let mut bill = Json::object([("Id", Json::from(id.to_string()))]);
    bill.merge(body.clone());

    if let Some(Json::Array(lines)) = bill.get_mut("Line") {
        for (index, line) in lines.iter_mut().enumerate() {
            if line.get("Id").is_none() {
                line.insert("Id", Json::from((index + 1).to_string()));
            }
            if line.get("LineNum").is_none() {
                line.insert("LineNum", Json::from(index as u64 + 1));
            }
        }
    }
    bill.insert("TotalAmt", Json::decimal(total));
    bill.insert("Balance", Json::decimal(total));
    if bill.get("CurrencyRef").is_none() {
        bill.insert(
            "CurrencyRef",
            Json::object([
                ("value", Json::from("USD")),
                ("name", Json::from("United States Dollar")),
            ]),
        );
    }
    if bill.get("TxnDate").is_none() {
        bill.insert("TxnDate", Json::from(Utc::now().format("%Y-%m-%d").to_string()));
    }
    bill.insert("domain", Json::from("QBO"));
    bill.insert("sparse", Json::Bool(false));
    bill.insert("SyncToken", Json::from("0"));
    bill.insert(
        "MetaData",
        Json::object([
            ("CreateTime", Json::from(now.clone())),
            ("LastUpdatedTime", Json::from(now)),
        ]),
    );
    bill
}

async fn create_bill(
    State(books): State<Arc<QuickBooks>>,
    Path(realm_id): Path<String>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = books.authorize(&headers) {
        return *response;
    }
    let request_id = query_param(raw_query.as_deref(), "requestid").filter(|id| !id.is_empty());

    // The whole check-create-remember step runs under one lock, so concurrent
    // requests with the same requestid cannot both create a bill.
    let mut ledger = books.ledger();
    if let Some(request_id) = &request_id
        && let Some((status, body)) = ledger.responses.get(&(realm_id.clone(), request_id.clone()))
    {
        tracing::info!(%realm_id, %request_id, "replaying the first response to a repeated requestid");
        return json_response(*status, body);
    }

    let (status, response_body) = match Json::parse_bytes(&body) {
        Err(error) => (
            StatusCode::BAD_REQUEST,
            fault_body(
                "ValidationFault",
                "Request has invalid or unsupported property",
                &format!("The request body is not valid JSON: {error}"),
                "2010",
            ),
        ),
        Ok(parsed) => match validate_bill(&parsed) {
            Err(outcome) => outcome,
            Ok(total) => {
                ledger.last_id += 1;
                let bill = build_bill(&parsed, ledger.last_id, total);
                ledger.bills.push((realm_id.clone(), bill.clone()));
                (
                    StatusCode::OK,
                    Json::object([("Bill", bill), ("time", Json::from(now_rfc3339_millis()))]),
                )
            }
        },
    };

    // QuickBooks replays the first response to a requestid, a validation failure included.
    if let Some(request_id) = request_id {
        ledger
            .responses
            .insert((realm_id, request_id), (status, response_body.clone()));
    }
    json_response(status, &response_body)
}

fn fault_body(fault_type: &str, message: &str, detail: &str, code: &str) -> Json {
    Json::object([
        (
            "Fault",
            Json::object([
                (
                    "Error",
                    Json::Array(vec![Json::object([
                        ("Message", Json::from(message)),
                        ("Detail", Json::from(detail)),
                        ("code", Json::from(code)),
                    ])]),
                ),
                ("type", Json::from(fault_type)),
            ]),
        ),
        ("time", Json::from(now_rfc3339_millis())),
    ])
}

async fn read_bill(
    State(books): State<Arc<QuickBooks>>,
    Path((realm_id, bill_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = books.authorize(&headers) {
        return *response;
    }
    let ledger = books.ledger();
    let found = ledger
        .bills
        .iter()
        .find(|(realm, bill)| *realm == realm_id && bill.get("Id").and_then(Json::as_str) == Some(bill_id.as_str()));
    match found {
        Some((_, bill)) => json_response(
            StatusCode::OK,
            &Json::object([("Bill", bill.clone()), ("time", Json::from(now_rfc3339_millis()))]),
        ),
        None => json_response(
            StatusCode::BAD_REQUEST,
            &fault_body(
                "ValidationFault",
                "Object Not Found",
                &format!(
                    "Object Not Found : Something you're trying to use has been made inactive or is not found: Bill {bill_id}"
                ),
                "610",
            ),
        ),
    }
}

async fn query(
    State(books): State<Arc<QuickBooks>>,
    Path(realm_id): Path<String>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = books.authorize(&headers) {
        return *response;
    }
    let Some(text) = query_param(raw_query.as_deref(), "query") else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &fault_body(
                "ValidationFault",
                "Error parsing query",
                "QueryParserError: query is missing",
                "4000",
            ),
        );
    };
    if let Some(parsed) = parse_vendor_query(&text) {
        return match parsed {
            Ok(display_name) => vendor_response(&books, &realm_id, display_name),
            Err(message) => json_response(
                StatusCode::BAD_REQUEST,
                &fault_body(
                    "ValidationFault",
                    "Error parsing query",
                    &format!("QueryParserError: {message}"),
                    "4000",
                ),
            ),
        };
    }

    let conditions = match parse_bill_query(&text) {
        Ok(conditions) => conditions,
        Err(message) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &fault_body(
                    "ValidationFault",
                    "Error parsing query",
                    &format!("QueryParserError: {message}"),
                    "4000",
                ),
            );
        }
    };

    let ledger = books.ledger();
    let matches: Vec<Json> = ledger
        .bills
        .iter()
        .filter(|(realm, bill)| *realm == realm_id && conditions.iter().all(|condition| condition.matches(bill)))
        .map(|(_, bill)| bill.clone())
        .collect();

    let query_response = if matches.is_empty() {
        Json::Object(Vec::new())
    } else {
        let count = matches.len() as u64;
        Json::object([
            ("Bill", Json::Array(matches)),
            ("startPosition", Json::from(1_u64)),
            ("maxResults", Json::from(count)),
        ])
    };
    json_response(
        StatusCode::OK,
        &Json::object([
            ("QueryResponse", query_response),
            ("time", Json::from(now_rfc3339_millis())),
        ]),
    )
}

/// Answers a vendor lookup. The sink stands in for a company whose vendor list
/// holds every name, so a new display name gets the next id instead of an empty result.
fn vendor_response(books: &QuickBooks, realm_id: &str, display_name: String) -> Response {
    let mut ledger = books.ledger();
    let next_id = 5001 + ledger.vendors.len();
    let id = ledger
        .vendors
        .entry((realm_id.to_owned(), display_name.clone()))
        .or_insert_with(|| next_id.to_string())
        .clone();
    let vendor = Json::object([
        ("Id", Json::from(id)),
        ("DisplayName", Json::from(display_name)),
        ("Active", Json::Bool(true)),
    ]);
    json_response(
        StatusCode::OK,
        &Json::object([
            (
                "QueryResponse",
                Json::object([
                    ("Vendor", Json::Array(vec![vendor])),
                    ("startPosition", Json::from(1_u64)),
                    ("maxResults", Json::from(1_u64)),
                ]),
            ),
            ("time", Json::from(now_rfc3339_millis())),
        ]),
    )
}

/// Parses `select * from Vendor where DisplayName = '...'`. Returns `None`
/// when the query is not about vendors, so the bill parser can take it.
fn parse_vendor_query(text: &str) -> Option<Result<String, String>> {
    let mut cursor = Cursor { rest: text.trim() };
    for keyword in ["select", "*", "from", "vendor"] {
        if !cursor.take_word(keyword) {
            return None;
        }
    }
    let parsed = (|| {
        if !cursor.take_word("where") {
            return Err("a vendor query needs WHERE DisplayName = '...'".to_owned());
        }
        let name = cursor.take_identifier().ok_or("expected a property name")?;
        if !name.eq_ignore_ascii_case("DisplayName") {
            return Err(format!(
                "property '{name}' is not supported for Vendor; use DisplayName"
            ));
        }
        if !cursor.take_symbol('=') {
            return Err("expected '=' after DisplayName".to_owned());
        }
        let value = cursor.take_quoted()?;
        if !cursor.is_done() {
            return Err(format!("expected the end of the query, got \"{}\"", cursor.rest));
        }
        Ok(value)
    })();
    Some(parsed)
}

/// One `Property = 'value'` term of a query's WHERE clause.
#[derive(Debug, PartialEq, Eq)]
struct Condition {
    property: BillProperty,
    value: String,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum BillProperty {
    Id,
    DocNumber,
    TxnDate,
    VendorRef,
}

impl Condition {
    fn matches(&self, bill: &Json) -> bool {
        let actual = match self.property {
            BillProperty::Id => bill.get("Id"),
            BillProperty::DocNumber => bill.get("DocNumber"),
            BillProperty::TxnDate => bill.get("TxnDate"),
            BillProperty::VendorRef => bill.get("VendorRef").and_then(|vendor| vendor.get("value")),
        };
        actual.and_then(Json::scalar_text).as_deref() == Some(self.value.as_str())
    }
}

/// Parses `select * from Bill [where P = 'v' [and P = 'v' ...]]`, the subset of
/// QuickBooks' query language this sink supports. Keywords are case-insensitive;
/// a quote inside a value is written `\'`.
fn parse_bill_query(text: &str) -> Result<Vec<Condition>, String> {
    let mut cursor = Cursor { rest: text.trim() };
    for keyword in ["select", "*", "from", "bill"] {
        if !cursor.take_word(keyword) {
            return Err(format!(
                "expected '{keyword}' in \"select * from Bill ...\", got \"{text}\""
            ));
        }
    }

    let mut conditions = Vec::new();
    if cursor.is_done() {
        return Ok(conditions);
    }
    if !cursor.take_word("where") {
        return Err(format!("expected WHERE after the entity name in \"{text}\""));
    }
    loop {
        let name = cursor.take_identifier().ok_or("expected a property name")?;
        let property = match name.to_ascii_lowercase().as_str() {
            "id" => BillProperty::Id,
            "docnumber" => BillProperty::DocNumber,
            "txndate" => BillProperty::TxnDate,
            "vendorref" => BillProperty::VendorRef,
            _ => {
                return Err(format!(
                    "property '{name}' is not supported; use Id, DocNumber, TxnDate or VendorRef"
                ));
            }
        };
        if !cursor.take_symbol('=') {
            return Err(format!("expected '=' after {name}"));
        }
        let value = cursor.take_quoted()?;
        conditions.push(Condition { property, value });

        if cursor.is_done() {
            return Ok(conditions);
        }
        if !cursor.take_word("and") {
            return Err(format!("expected AND or the end of the query, got \"{}\"", cursor.rest));
        }
    }
}

struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    fn is_done(&mut self) -> bool {
        self.rest = self.rest.trim_start();
        self.rest.is_empty()
    }

    fn take_word(&mut self, word: &str) -> bool {
        self.rest = self.rest.trim_start();
        let Some(head) = self.rest.get(..word.len()) else {
            return false;
        };
        let boundary = self.rest[word.len()..]
            .chars()
            .next()
            .is_none_or(|next| !next.is_ascii_alphanumeric() || word == "*");
        if head.eq_ignore_ascii_case(word) && boundary {
            self.rest = &self.rest[word.len()..];
            true
        } else {
            false
        }
    }

    fn take_symbol(&mut self, symbol: char) -> bool {
        self.rest = self.rest.trim_start();
        match self.rest.strip_prefix(symbol) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn take_identifier(&mut self) -> Option<String> {
        self.rest = self.rest.trim_start();
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let identifier = self.rest[..end].to_owned();
        self.rest = &self.rest[end..];
        Some(identifier)
    }

    fn take_quoted(&mut self) -> Result<String, String> {
        if !self.take_symbol('\'') {
            return Err("expected a value in single quotes".into());
        }
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                '\'' => {
                    self.rest = &self.rest[index + 1..];
                    return Ok(value);
                }
                other => value.push(other),
            }
        }
        Err("a quoted value is not closed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_with_doc_number() {
        let conditions = parse_bill_query("SELECT * FROM Bill WHERE DocNumber = 'INV/2023/03/0008'").unwrap();

        assert_eq!(
            conditions,
            vec![Condition {
                property: BillProperty::DocNumber,
                value: "INV/2023/03/0008".into()
            }]
        );
    }

    #[test]
    fn query_with_escaped_quote_and_and() {
        let conditions =
            parse_bill_query(r"select * from Bill where DocNumber = 'O\'Brien 1' and VendorRef = '56'").unwrap();

        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0].value, "O'Brien 1");
        assert_eq!(conditions[1].property, BillProperty::VendorRef);
    }

    #[test]
    fn vendor_queries() {
        assert_eq!(
            parse_vendor_query(r"select * from Vendor where DisplayName = 'O\'Brien Ltd'"),
            Some(Ok("O'Brien Ltd".to_owned()))
        );
        assert_eq!(parse_vendor_query("select * from Bill"), None);
        assert!(matches!(parse_vendor_query("select * from Vendor"), Some(Err(_))));
        assert!(matches!(
            parse_vendor_query("select * from Vendor where Id = '1'"),
            Some(Err(_))
        ));
    }

    #[test]
    fn query_without_where() {
        assert_eq!(parse_bill_query("select * from bill").unwrap(), vec![]);
    }

    #[test]
    fn invalid_queries() {
        for text in [
            "",
            "select * from Invoice",
            "select * from Bills",
            "select * from Bill where",
            "select * from Bill where Amount = '5'",
            "select * from Bill where DocNumber = 'open",
            "select * from Bill where DocNumber 'x'",
            "select * from Bill where DocNumber = 'x' or Id = '1'",
        ] {
            assert!(parse_bill_query(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn bill_total_is_exact() {
        let body = Json::parse(
            r#"{"VendorRef": {"value": "56"}, "Line": [
                {"DetailType": "AccountBasedExpenseLineDetail", "Amount": 262.90,
                 "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "7"}}},
                {"DetailType": "AccountBasedExpenseLineDetail", "Amount": 16.94,
                 "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "7"}}}]}"#,
        )
        .unwrap();

        assert_eq!(validate_bill(&body).ok(), Some(Decimal::new(27984, 2)));
    }
}
