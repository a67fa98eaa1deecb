//! Xero Accounting API sink: bills (`ACCPAY` invoices) and the Xero token endpoint.
//!
//! Routes (every `xero-tenant-id` starts with no invoices):
//! - `PUT` or `POST /api.xro/2.0/Invoices[?summarizeErrors=false]` creates bills;
//!   a `POST` whose invoice carries a known `InvoiceID` updates that invoice.
//! - `GET /api.xro/2.0/Invoices?where=InvoiceNumber=="..."` (also `InvoiceNumbers=` and `IDs=`).
//! - `GET /api.xro/2.0/Invoices/{InvoiceID}`.
//! - `POST /connect/token` refreshes tokens (see [`crate::sinks::oauth`]).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::HeaderValue;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use chrono::{NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;

use crate::faults::Fault;
use crate::json::Json;
use crate::server::{ServerHandle, ShutdownTrigger, serve};
use crate::sinks::core::SinkCore;
use crate::sinks::oauth::{AccessCheck, OAuthStore, TokenFlavor};
use crate::util::{bearer_token, json_response, query_param};

/// The path of Xero's OAuth 2.0 token endpoint.
pub const XERO_TOKEN_PATH: &str = "/connect/token";

/// The `InvoiceID` Xero returns for an invoice that failed validation.
pub const EMPTY_INVOICE_ID: &str = "00000000-0000-0000-0000-000000000000";

const INVOICES_PATH: &str = "/api.xro/2.0/Invoices";

/// Settings of the Xero sink.
#[derive(Debug, Clone, Default)]
pub struct XeroConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

/// Starts the Xero sink on the current tokio runtime.
pub async fn start_xero(config: XeroConfig) -> io::Result<ServerHandle> {
    let oauth = Arc::new(OAuthStore::new(TokenFlavor::Xero));
    let xero = Arc::new(Xero {
        oauth: oauth.clone(),
        tenants: Mutex::new(HashMap::new()),
    });
    let core = Arc::new(SinkCore::new("xero", 500, render_fault).with_oauth(XERO_TOKEN_PATH, oauth.clone()));

    let api = Router::new()
        .route(INVOICES_PATH, get(list_invoices).put(save_invoices).post(save_invoices))
        .route(&format!("{INVOICES_PATH}/{{invoice_id}}"), get(read_invoice))
        .with_state(xero)
        .merge(oauth.token_route(XERO_TOKEN_PATH));

    let (trigger, signal) = ShutdownTrigger::new();
    serve("xero", config.port, core.into_router(api), trigger, signal).await
}

struct Xero {
    oauth: Arc<OAuthStore>,
    tenants: Mutex<HashMap<String, Tenant>>,
}

#[derive(Default)]
struct Tenant {
    invoices: Vec<Json>,
    /// Contact name to the `ContactID` given to it, so one vendor keeps one id.
    contact_ids: HashMap<String, String>,
    /// The first response to each `Idempotency-Key`.
    responses: HashMap<String, (StatusCode, Json)>,
}

impl Xero {
    fn tenants(&self) -> MutexGuard<'_, HashMap<String, Tenant>> {
        // Each handler updates a tenant in one critical section, so a poisoned lock holds consistent data.
        self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks the bearer token and returns the tenant id.
    fn authorize(&self, headers: &HeaderMap) -> Result<String, Box<Response>> {
        match self.oauth.check_access(bearer_token(headers)) {
            AccessCheck::Accepted => {}
            AccessCheck::Expired => {
                return Err(Box::new(problem(
                    StatusCode::UNAUTHORIZED,
                    "TokenExpired: token expired",
                )));
            }
            AccessCheck::Missing | AccessCheck::Unknown => {
                return Err(Box::new(problem(
                    StatusCode::UNAUTHORIZED,
                    "AuthenticationUnsuccessful",
                )));
            }
        }
        match headers.get("xero-tenant-id").and_then(|value| value.to_str().ok()) {
            Some(tenant) if !tenant.trim().is_empty() => Ok(tenant.trim().to_owned()),
            _ => Err(Box::new(problem(
                StatusCode::FORBIDDEN,
                "AuthenticationUnsuccessful: the xero-tenant-id header is missing",
            ))),
        }
    }
}

/// Xero's problem body for authentication, rate-limit and server errors.
fn problem(status: StatusCode, detail: &str) -> Response {
    json_response(
        status,
        &Json::object([
            ("Type", Json::Null),
            ("Title", Json::from(status.canonical_reason().unwrap_or("Error"))),
            ("Status", Json::from(u64::from(status.as_u16()))),
            ("Detail", Json::from(detail)),
            ("Instance", Json::from(uuid::Uuid::new_v4().to_string())),
        ]),
    )
}

fn exception(error_number: u64, exception_type: &str, message: &str) -> Json {
    Json::object([
        ("ErrorNumber", Json::from(error_number)),
        ("Type", Json::from(exception_type)),
        ("Message", Json::from(message)),
    ])
}

fn render_fault(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status.as_u16() {
        429 => {
            let mut response = problem(status, "Rate limit exceeded; retry after the Retry-After interval");
            response
                .headers_mut()
                .insert("x-rate-limit-problem", HeaderValue::from_static("minute"));
            response
        }
        400 => json_response(
            status,
            &exception(
                fault.errcode.map_or(10, |code| code.unsigned_abs()),
                "ValidationException",
                "A validation exception occurred",
            ),
        ),
        _ => problem(status, "injected by the devstack sink"),
    }
}

/// Xero's JSON date form, `/Date(<milliseconds since 1970>+0000)/`.
fn xero_date(date: NaiveDateTime) -> String {
    format!("/Date({}+0000)/", date.and_utc().timestamp_millis())
}

/// Reads `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS`.
fn parse_date(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").ok())
}

/// Lists the validation errors of one invoice of a request.
fn check_invoice(invoice: &Json) -> Vec<String> {
    let mut errors = Vec::new();
    if !invoice.is_object() {
        errors.push(format!("Each invoice must be an object, got {}", invoice.type_name()));
        return errors;
    }

    if invoice.get("Type").and_then(Json::as_str) != Some("ACCPAY") {
        errors.push("Type must be ACCPAY (this sink accepts bills only)".into());
    }

    let contact = invoice.get("Contact");
    let has_contact = ["ContactID", "Name"].iter().any(|key| {
        contact
            .and_then(|contact| contact.get(key))
            .and_then(Json::as_str)
            .is_some_and(|value| !value.trim().is_empty())
    });
    if !has_contact {
        errors.push("A Contact with a ContactID or a Name must be specified".into());
    }

    match invoice.get("LineItems").and_then(Json::as_array) {
        Some(lines) if !lines.is_empty() => {
            for (index, line) in lines.iter().enumerate() {
                if !line.is_object() {
                    errors.push(format!("LineItems[{index}] must be an object"));
                    continue;
                }
                for key in ["Quantity", "UnitAmount", "LineAmount", "TaxAmount"] {
                    if let Some(value) = line.get(key).filter(|value| !value.is_null())
                        && value.as_decimal().is_none()
                    {
                        errors.push(format!("LineItems[{index}].{key} must be a number, got {value}"));
                    }
                }
            }
        }
        _ => errors.push("At least one line item must be specified".into()),
    }

    if let Some(status) = invoice.get("Status").filter(|value| !value.is_null())
        && !matches!(status.as_str(), Some("DRAFT" | "SUBMITTED" | "AUTHORISED"))
    {
        errors.push(format!("Status must be DRAFT, SUBMITTED or AUTHORISED, got {status}"));
    }
    if let Some(types) = invoice.get("LineAmountTypes").filter(|value| !value.is_null())
        && !matches!(types.as_str(), Some("Exclusive" | "Inclusive" | "NoTax"))
    {
        errors.push(format!(
            "LineAmountTypes must be Exclusive, Inclusive or NoTax, got {types}"
        ));
    }
    for key in ["Date", "DueDate"] {
        if let Some(value) = invoice.get(key).filter(|value| !value.is_null())
            && value.as_str().and_then(parse_date).is_none()
        {
            errors.push(format!("{key} must be a date as YYYY-MM-DD, got {value}"));
        }
    }
    if let Some(code) = invoice.get("CurrencyCode").filter(|value| !value.is_null()) {
        let valid = code
            .as_str()
            .is_some_and(|code| code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()));
        if !valid {
            errors.push(format!("CurrencyCode must be a three-letter ISO 4217 code, got {code}"));
        }
    }
    if let Some(number) = invoice.get("InvoiceNumber").and_then(Json::as_str)
        && number.chars().count() > 255
    {
        errors.push("InvoiceNumber must be 255 characters or less".into());
    }
    errors
}

/// Builds the stored form of a valid invoice: ids, Xero dates and totals computed from the lines.
fn build_invoice(tenant: &mut Tenant, input: &Json, invoice_id: String) -> Json {
    let now = Utc::now().naive_utc();
    let mut invoice = Json::object([("InvoiceID", Json::from(invoice_id))]);
    invoice.merge(input.clone());

    let mut contact = input.get("Contact").cloned().unwrap_or_default();
    if contact.get("ContactID").and_then(Json::as_str).is_none() {
        let name = contact
            .get("Name")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        let contact_id = tenant
            .contact_ids
            .entry(name)
            .or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone();
        contact.insert("ContactID", Json::from(contact_id));
    }
    invoice.insert("Contact", contact);

    let line_amount_types = input
        .get("LineAmountTypes")
        .and_then(Json::as_str)
        .unwrap_or("Exclusive")
        .to_owned();
    let mut line_sum = Decimal::ZERO;
    let mut tax_sum = Decimal::ZERO;
    let mut lines = Vec::new();
    for line in input.get("LineItems").and_then(Json::as_array).unwrap_or_default() {
        let mut line = line.clone();
        let quantity = line.get("Quantity").and_then(Json::as_decimal).unwrap_or(Decimal::ONE);
        let amount = match line.get("LineAmount").and_then(Json::as_decimal) {
            Some(amount) => amount,
            None => line
                .get("UnitAmount")
                .and_then(Json::as_decimal)
                .map_or(Decimal::ZERO, |unit| unit * quantity),
        };
        let tax = line
            .get("TaxAmount")
            .and_then(Json::as_decimal)
            .unwrap_or(Decimal::ZERO);
        line_sum += amount;
        tax_sum += tax;
        line.insert("LineAmount", Json::decimal(amount));
        line.insert("TaxAmount", Json::decimal(tax));
        line.insert("LineItemID", Json::from(uuid::Uuid::new_v4().to_string()));
        lines.push(line);
    }
    invoice.insert("LineItems", Json::Array(lines));

    let (subtotal, total_tax, total) = match line_amount_types.as_str() {
        "Inclusive" => (line_sum - tax_sum, tax_sum, line_sum),
        "NoTax" => (line_sum, Decimal::ZERO, line_sum),
        _ => (line_sum, tax_sum, line_sum + tax_sum),
    };

    for key in ["Date", "DueDate"] {
        let parsed = input.get(key).and_then(Json::as_str).and_then(parse_date);
        let date = match (key, parsed) {
            (_, Some(date)) => Some(date),
            ("Date", None) => now.date().and_hms_opt(0, 0, 0),
            _ => None,
        };
        if let Some(date) = date {
            invoice.insert(key, Json::from(xero_date(date)));
            invoice.insert(
                &format!("{key}String"),
                Json::from(date.format("%Y-%m-%dT%H:%M:%S").to_string()),
            );
        }
    }

    invoice.insert("LineAmountTypes", Json::from(line_amount_types));
    if invoice.get("Status").and_then(Json::as_str).is_none() {
        invoice.insert("Status", Json::from("DRAFT"));
    }
    if invoice.get("CurrencyCode").and_then(Json::as_str).is_none() {
        invoice.insert("CurrencyCode", Json::from("USD"));
    }
    invoice.insert("SubTotal", Json::decimal(subtotal));
    invoice.insert("TotalTax", Json::decimal(total_tax));
    invoice.insert("Total", Json::decimal(total));
    invoice.insert("AmountDue", Json::decimal(total));
    invoice.insert("AmountPaid", Json::decimal(Decimal::ZERO));
    invoice.insert("UpdatedDateUTC", Json::from(xero_date(now)));
    invoice.insert("HasErrors", Json::Bool(false));
    invoice
}

fn envelope(invoices: Vec<Json>) -> Json {
    Json::object([
        ("Id", Json::from(uuid::Uuid::new_v4().to_string())),
        ("Status", Json::from("OK")),
        ("ProviderName", Json::from("bridge-devstack")),
        ("DateTimeUTC", Json::from(xero_date(Utc::now().naive_utc()))),
        ("Invoices", Json::Array(invoices)),
    ])
}

/// Extracts the invoices of a request body: `{"Invoices": [...]}` or a single invoice object.
fn request_invoices(body: &Json) -> Result<Vec<Json>, String> {
    match body {
        Json::Object(_) => match body.get("Invoices") {
            Some(Json::Array(invoices)) if !invoices.is_empty() => Ok(invoices.clone()),
            Some(other) => Err(format!("Invoices must be a non-empty array, got {other}")),
            None => Ok(vec![body.clone()]),
        },
        other => Err(format!(
            "the request body must be a JSON object, got {}",
            other.type_name()
        )),
    }
}

async fn save_invoices(
    State(xero): State<Arc<Xero>>,
    method: Method,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tenant_id = match xero.authorize(&headers) {
        Ok(tenant_id) => tenant_id,
        Err(response) => return *response,
    };
    let summarize_errors =
        query_param(raw_query.as_deref(), "summarizeErrors").is_none_or(|value| !value.eq_ignore_ascii_case("false"));
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
        .map(str::to_owned);

    let mut tenants = xero.tenants();
    let tenant = tenants.entry(tenant_id.clone()).or_default();
    if let Some(key) = &idempotency_key
        && let Some((status, body)) = tenant.responses.get(key)
    {
        tracing::info!(%tenant_id, idempotency_key = %key, "replaying the first response to a repeated Idempotency-Key");
        return json_response(*status, body);
    }

    let (status, response_body) = save_in_tenant(tenant, &method, &body, summarize_errors);
    if let Some(key) = idempotency_key {
        tenant.responses.insert(key, (status, response_body.clone()));
    }
    json_response(status, &response_body)
}

fn save_in_tenant(tenant: &mut Tenant, method: &Method, body: &[u8], summarize_errors: bool) -> (StatusCode, Json) {
    let parsed = match Json::parse_bytes(body) {
        Ok(parsed) => parsed,
        Err(error) => {
            let message = format!("The request body is not valid JSON: {error}");
            return (
                StatusCode::BAD_REQUEST,
                exception(14, "PostDataInvalidException", &message),
            );
        }
    };
    let inputs = match request_invoices(&parsed) {
        Ok(inputs) => inputs,
        Err(message) => {
            return (
                StatusCode::BAD_REQUEST,
                exception(14, "PostDataInvalidException", &message),
            );
        }
    };

    let mut checked: Vec<(Json, Vec<String>, Option<usize>)> = Vec::new();
    for input in inputs {
        let mut errors = check_invoice(&input);
        // A POST that names an existing InvoiceID updates it; PUT always creates.
        let mut existing = None;
        if let Some(id) = input.get("InvoiceID").and_then(Json::as_str) {
            existing = tenant
                .invoices
                .iter()
                .position(|invoice| invoice.get("InvoiceID").and_then(Json::as_str) == Some(id));
            if *method == Method::PUT || existing.is_none() {
                errors.push(format!(
                    "InvoiceID {id} cannot be used here: PUT creates new invoices and POST updates only existing ones"
                ));
            }
        }
        checked.push((input, errors, existing));
    }

    let any_errors = checked.iter().any(|(_, errors, _)| !errors.is_empty());
    if any_errors && summarize_errors {
        let elements = checked
            .into_iter()
            .filter(|(_, errors, _)| !errors.is_empty())
            .map(|(input, errors, _)| with_errors(input, errors))
            .collect();
        let mut body = exception(10, "ValidationException", "A validation exception occurred");
        body.insert("Elements", Json::Array(elements));
        return (StatusCode::BAD_REQUEST, body);
    }

    let mut results = Vec::new();
    for (input, errors, existing) in checked {
        if !errors.is_empty() {
            results.push(with_errors(input, errors));
            continue;
        }
        match existing {
            Some(position) => {
                let id = tenant.invoices[position]
                    .get("InvoiceID")
                    .and_then(Json::as_str)
                    .unwrap_or(EMPTY_INVOICE_ID)
                    .to_owned();
                let mut merged = tenant.invoices[position].clone();
                merged.merge(input);
                let invoice = build_invoice(tenant, &merged, id);
                tenant.invoices[position] = invoice.clone();
                results.push(invoice);
            }
            None => {
                let invoice = build_invoice(tenant, &input, uuid::Uuid::new_v4().to_string());
                tenant.invoices.push(invoice.clone());
                results.push(invoice);
            }
        }
    }
    (StatusCode::OK, envelope(results))
}

fn with_errors(input: Json, errors: Vec<String>) -> Json {
    let mut element = Json::object([("InvoiceID", Json::from(EMPTY_INVOICE_ID))]);
    if input.is_object() {
        element.merge(input);
        element.insert("InvoiceID", Json::from(EMPTY_INVOICE_ID));
    }
    element.insert("HasErrors", Json::Bool(true));
    element.insert("StatusAttributeString", Json::from("ERROR"));
    element.insert(
        "ValidationErrors",
        Json::Array(
            errors
                .into_iter()
                .map(|message| Json::object([("Message", Json::from(message))]))
                .collect(),
        ),
    );
    element
}

async fn list_invoices(State(xero): State<Arc<Xero>>, RawQuery(raw_query): RawQuery, headers: HeaderMap) -> Response {
    let tenant_id = match xero.authorize(&headers) {
        Ok(tenant_id) => tenant_id,
        Err(response) => return *response,
    };

    let mut filters: Vec<Filter> = Vec::new();
    if let Some(clause) = query_param(raw_query.as_deref(), "where").filter(|clause| !clause.trim().is_empty()) {
        match parse_where(&clause) {
            Ok(parsed) => filters.extend(parsed),
            Err(message) => {
                return json_response(StatusCode::BAD_REQUEST, &exception(16, "QueryParseException", &message));
            }
        }
    }
    for (parameter, field) in [("InvoiceNumbers", "InvoiceNumber"), ("IDs", "InvoiceID")] {
        if let Some(list) = query_param(raw_query.as_deref(), parameter) {
            filters.push(Filter::AnyOf {
                field: field.into(),
                values: list.split(',').map(|value| value.trim().to_owned()).collect(),
            });
        }
    }

    let tenants = xero.tenants();
    let invoices = tenants
        .get(&tenant_id)
        .map(|tenant| {
            tenant
                .invoices
                .iter()
                .filter(|invoice| filters.iter().all(|filter| filter.matches(invoice)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    json_response(StatusCode::OK, &envelope(invoices))
}

async fn read_invoice(State(xero): State<Arc<Xero>>, Path(invoice_id): Path<String>, headers: HeaderMap) -> Response {
    let tenant_id = match xero.authorize(&headers) {
        Ok(tenant_id) => tenant_id,
        Err(response) => return *response,
    };
    let tenants = xero.tenants();
    let found = tenants.get(&tenant_id).and_then(|tenant| {
        tenant
            .invoices
            .iter()
            .find(|invoice| invoice.get("InvoiceID").and_then(Json::as_str) == Some(invoice_id.as_str()))
            .cloned()
    });
    match found {
        Some(invoice) => json_response(StatusCode::OK, &envelope(vec![invoice])),
        None => problem(StatusCode::NOT_FOUND, &format!("Invoice {invoice_id} was not found")),
    }
}

/// One condition of a `where` clause or of a list parameter.
#[derive(Debug, PartialEq, Eq)]
enum Filter {
    Equals { field: String, value: String },
    AnyOf { field: String, values: Vec<String> },
}

impl Filter {
    fn matches(&self, invoice: &Json) -> bool {
        let read = |field: &str| -> Option<String> {
            let mut node = invoice;
            for part in field.split('.') {
                node = node.get(part)?;
            }
            node.scalar_text()
        };
        match self {
            Filter::Equals { field, value } => read(field).as_deref() == Some(value.as_str()),
            Filter::AnyOf { field, values } => read(field).is_some_and(|actual| values.contains(&actual)),
        }
    }
}

/// Parses the subset of Xero's `where` syntax this sink supports: terms
/// `Field=="text"` or `InvoiceID==guid("...")` joined by `AND` or `&&`.
fn parse_where(clause: &str) -> Result<Vec<Filter>, String> {
    const FIELDS: [&str; 6] = [
        "InvoiceNumber",
        "Reference",
        "Type",
        "Status",
        "Contact.Name",
        "InvoiceID",
    ];

    let normalised = clause.replace("&&", " AND ");
    let mut filters = Vec::new();
    for term in split_and(&normalised) {
        let (field, value) = term
            .split_once("==")
            .ok_or_else(|| format!("expected Field==\"value\" in \"{term}\""))?;
        let field = field.trim();
        if !FIELDS.contains(&field) {
            return Err(format!(
                "field '{field}' is not supported; use one of {}",
                FIELDS.join(", ")
            ));
        }
        let value = value.trim();
        let inner = value
            .strip_prefix("guid(")
            .or_else(|| value.strip_prefix("Guid("))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or(value)
            .trim();
        let text = inner
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .ok_or_else(|| format!("the value of {field} must be in double quotes, got {value}"))?;
        filters.push(Filter::Equals {
            field: field.to_owned(),
            value: text.replace("\\\"", "\""),
        });
    }
    Ok(filters)
}

/// Splits on the word AND (any case) outside double quotes.
fn split_and(clause: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut words = clause.split_inclusive(char::is_whitespace).peekable();
    while let Some(word) = words.next() {
        let quotes = word.matches('"').count() - word.matches("\\\"").count();
        if !in_quotes && word.trim().eq_ignore_ascii_case("and") {
            terms.push(std::mem::take(&mut current));
        } else {
            current.push_str(word);
        }
        if quotes % 2 == 1 {
            in_quotes = !in_quotes;
        }
        if words.peek().is_none() {
            terms.push(std::mem::take(&mut current));
        }
    }
    terms
        .into_iter()
        .map(|term| term.trim().to_owned())
        .filter(|term| !term.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_with_invoice_number() {
        assert_eq!(
            parse_where(r#"InvoiceNumber=="INV/2023/03/0008""#).unwrap(),
            vec![Filter::Equals {
                field: "InvoiceNumber".into(),
                value: "INV/2023/03/0008".into()
            }]
        );
    }

    #[test]
    fn where_with_and_and_guid() {
        let filters = parse_where(
            r#"Type == "ACCPAY" AND InvoiceNumber=="A and B" && InvoiceID==guid("8f1c6c1e-0000-4000-8000-000000000001")"#,
        )
        .unwrap();

        assert_eq!(filters.len(), 3);
        assert_eq!(
            filters[1],
            Filter::Equals {
                field: "InvoiceNumber".into(),
                value: "A and B".into()
            }
        );
        assert_eq!(
            filters[2],
            Filter::Equals {
                field: "InvoiceID".into(),
                value: "8f1c6c1e-0000-4000-8000-000000000001".into()
            }
        );
    }

    #[test]
    fn invalid_where_clauses() {
        for clause in [r#"Total=="5""#, "InvoiceNumber=5", r#"InvoiceNumber="x""#] {
            assert!(parse_where(clause).is_err(), "accepted {clause}");
        }
    }

    #[test]
    fn totals_follow_line_amount_types() {
        let mut tenant = Tenant::default();
        let input = Json::parse(
            r#"{"Type": "ACCPAY", "Contact": {"Name": "Azure Interior"}, "LineAmountTypes": "Exclusive",
                "LineItems": [{"Quantity": 2, "UnitAmount": 131.45, "TaxAmount": 16.94}]}"#,
        )
        .unwrap();

        let invoice = build_invoice(&mut tenant, &input, "id".into());

        assert_eq!(invoice.get("SubTotal"), Some(&Json::Number("262.90".into())));
        assert_eq!(invoice.get("Total"), Some(&Json::Number("279.84".into())));
        assert_eq!(check_invoice(&input), Vec::<String>::new());
    }

    #[test]
    fn invoice_checks_name_the_problem() {
        let input =
            Json::parse(r#"{"Type": "ACCREC", "LineItems": [], "Date": "20/03/2023", "CurrencyCode": "usd"}"#).unwrap();

        let errors = check_invoice(&input);

        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].contains("ACCPAY"));
    }
}
