//! HubSpot CRM sink: property updates on CRM objects.
//!
//! Routes:
//! - `PATCH /crm/v3/objects/{objectType}/{objectId}[?idProperty=<property>]` with `{"properties": {...}}`.
//! - `GET /crm/v3/objects/{objectType}/{objectId}[?idProperty=<property>]`.
//!
//! By default every record exists: a PATCH to an unseen id creates it. After
//! `POST /_records` only the listed records exist and others return 404.
//! `DELETE /_records` deletes all records and returns to the default.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::HeaderValue;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use crate::faults::Fault;
use crate::json::Json;
use crate::server::{ServerHandle, ShutdownTrigger, serve};
use crate::sinks::core::SinkCore;
use crate::util::{bearer_token, json_response, now_rfc3339_millis, query_param};

/// Settings of the HubSpot sink.
#[derive(Debug, Clone, Default)]
pub struct HubSpotConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// `(objectType, objectId)` pairs that exist. `None` means every record exists.
    pub known_records: Option<Vec<(String, String)>>,
}

/// Starts the HubSpot sink on the current tokio runtime.
pub async fn start_hubspot(config: HubSpotConfig) -> io::Result<ServerHandle> {
    let crm = Arc::new(Crm::default());
    if let Some(records) = &config.known_records {
        let mut store = crm.store();
        store.strict = true;
        for (object_type, id) in records {
            store.insert_record(object_type, id, Json::Object(Vec::new()));
        }
    }
    let core = Arc::new(SinkCore::new("hubspot", 500, render_fault));

    let api = Router::new()
        .route(
            "/crm/v3/objects/{object_type}/{object_id}",
            get(read_object).patch(update_object),
        )
        .with_state(crm.clone());
    let admin = Router::new()
        .route("/_records", get(list_records).post(add_records).delete(reset_records))
        .with_state(crm);

    let (trigger, signal) = ShutdownTrigger::new();
    serve(
        "hubspot",
        config.port,
        core.into_router(api).merge(admin),
        trigger,
        signal,
    )
    .await
}

#[derive(Default)]
struct Crm {
    store: Mutex<RecordStore>,
}

#[derive(Default)]
struct RecordStore {
    /// When true, only records added through `POST /_records` exist.
    strict: bool,
    records: HashMap<(String, String), CrmRecord>,
    /// Ids for records created through `idProperty`, which have no id of their own yet.
    last_id: u64,
}

#[derive(Clone)]
struct CrmRecord {
    id: String,
    properties: Json,
    created_at: String,
    updated_at: String,
}

impl CrmRecord {
    fn to_json(&self) -> Json {
        Json::object([
            ("id", Json::from(self.id.as_str())),
            ("properties", self.properties.clone()),
            ("createdAt", Json::from(self.created_at.as_str())),
            ("updatedAt", Json::from(self.updated_at.as_str())),
            ("archived", Json::Bool(false)),
        ])
    }
}

impl Crm {
    fn store(&self) -> MutexGuard<'_, RecordStore> {
        // Each handler updates the store in one critical section, so a poisoned lock holds consistent data.
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RecordStore {
    fn insert_record(&mut self, object_type: &str, id: &str, properties: Json) -> &mut CrmRecord {
        let now = now_rfc3339_millis();
        let record = CrmRecord {
            id: id.to_owned(),
            properties: Json::object([
                ("hs_object_id", Json::from(id)),
                ("createdate", Json::from(now.as_str())),
                ("hs_lastmodifieddate", Json::from(now.as_str())),
            ]),
            created_at: now.clone(),
            updated_at: now,
        };
        let entry = self
            .records
            .entry((object_type.to_owned(), id.to_owned()))
            .or_insert(record);
        entry.properties.merge(properties);
        entry
    }

    /// Finds the storage key of the record that `object_id` names, by id or by the `id_property` value.
    fn find(&self, object_type: &str, object_id: &str, id_property: Option<&str>) -> Option<(String, String)> {
        match id_property {
            None | Some("hs_object_id") => {
                let key = (object_type.to_owned(), object_id.to_owned());
                self.records.contains_key(&key).then_some(key)
            }
            Some(property) => self
                .records
                .iter()
                .find(|((kind, _), record)| {
                    kind == object_type && record.properties.get(property).and_then(Json::as_str) == Some(object_id)
                })
                .map(|(key, _)| key.clone()),
        }
    }
}

fn error_body(message: &str, category: &str) -> Json {
    Json::object([
        ("status", Json::from("error")),
        ("message", Json::from(message)),
        ("correlationId", Json::from(uuid::Uuid::new_v4().to_string())),
        ("category", Json::from(category)),
    ])
}

fn render_fault(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status != StatusCode::TOO_MANY_REQUESTS {
        let category = match status.as_u16() {
            400 => "VALIDATION_ERROR",
            401 => "INVALID_AUTHENTICATION",
            404 => "OBJECT_NOT_FOUND",
            _ => "INTERNAL_ERROR",
        };
        return json_response(status, &error_body("injected by the devstack sink", category));
    }

    let mut body = error_body("You have reached your secondly limit.", "RATE_LIMITS");
    body.insert("errorType", Json::from("RATE_LIMIT"));
    body.insert("policyName", Json::from("SECONDLY"));
    let mut response = json_response(status, &body);
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-hubspot-ratelimit-daily", "250000"),
        ("x-hubspot-ratelimit-daily-remaining", "249000"),
        ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
        ("x-hubspot-ratelimit-max", "100"),
        ("x-hubspot-ratelimit-remaining", "0"),
        ("x-hubspot-ratelimit-secondly", "10"),
        ("x-hubspot-ratelimit-secondly-remaining", "0"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &error_body(
            "Authentication credentials not found: send a private app access token as Authorization: Bearer <token>",
            "INVALID_AUTHENTICATION",
        ),
    )
}

fn not_found(object_type: &str, object_id: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &error_body(
            &format!("Object {object_type} {object_id} was not found"),
            "OBJECT_NOT_FOUND",
        ),
    )
}

/// Reads `{"properties": {...}}`, turning every value into the string HubSpot stores.
fn read_properties(body: &[u8]) -> Result<Json, String> {
    let parsed = Json::parse_bytes(body).map_err(|error| format!("Invalid input JSON: {error}"))?;
    let Some(Json::Object(members)) = parsed.get("properties") else {
        return Err("The request body must be an object with a \"properties\" object".into());
    };
    stringify_properties(members)
}

/// Converts property values to the strings HubSpot stores: null becomes `""`, and objects or arrays are rejected.
fn stringify_properties(members: &[(String, Json)]) -> Result<Json, String> {
    let mut properties = Json::Object(Vec::new());
    for (name, value) in members {
        let text = match value {
            Json::Null => String::new(),
            Json::String(_) | Json::Number(_) | Json::Bool(_) => value.scalar_text().unwrap_or_default(),
            other => {
                return Err(format!(
                    "Property \"{name}\" must be a string, number, boolean or null, got {}",
                    other.type_name()
                ));
            }
        };
        properties.insert(name, Json::from(text));
    }
    Ok(properties)
}

async fn update_object(
    State(crm): State<Arc<Crm>>,
    Path((object_type, object_id)): Path<(String, String)>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bearer_token(&headers).is_none() {
        return unauthorized();
    }
    let properties = match read_properties(&body) {
        Ok(properties) => properties,
        Err(message) => return json_response(StatusCode::BAD_REQUEST, &error_body(&message, "VALIDATION_ERROR")),
    };
    let id_property = query_param(raw_query.as_deref(), "idProperty").filter(|name| !name.is_empty());

    let mut store = crm.store();
    let key = match store.find(&object_type, &object_id, id_property.as_deref()) {
        Some(key) => key,
        None if store.strict => return not_found(&object_type, &object_id),
        None => {
            // Default mode: the record exists, so it is created on first use.
            let (id, initial) = match id_property.as_deref() {
                None | Some("hs_object_id") => (object_id.clone(), Json::Object(Vec::new())),
                Some(property) => {
                    store.last_id += 1;
                    (
                        store.last_id.to_string(),
                        Json::object([(property, Json::from(object_id.as_str()))]),
                    )
                }
            };
            store.insert_record(&object_type, &id, initial);
            (object_type.clone(), id)
        }
    };

    let Some(record) = store.records.get_mut(&key) else {
        return not_found(&object_type, &object_id);
    };
    let now = now_rfc3339_millis();
    record.properties.merge(properties);
    record
        .properties
        .insert("hs_lastmodifieddate", Json::from(now.as_str()));
    record.updated_at = now;
    json_response(StatusCode::OK, &record.to_json())
}

async fn read_object(
    State(crm): State<Arc<Crm>>,
    Path((object_type, object_id)): Path<(String, String)>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if bearer_token(&headers).is_none() {
        return unauthorized();
    }
    let id_property = query_param(raw_query.as_deref(), "idProperty");
    let store = crm.store();
    match store
        .find(&object_type, &object_id, id_property.as_deref())
        .and_then(|key| store.records.get(&key))
    {
        Some(record) => json_response(StatusCode::OK, &record.to_json()),
        None => not_found(&object_type, &object_id),
    }
}

async fn list_records(State(crm): State<Arc<Crm>>) -> Response {
    let store = crm.store();
    let mut records: Vec<(&(String, String), &CrmRecord)> = store.records.iter().collect();
    records.sort_by(|left, right| left.0.cmp(right.0));
    let list = records
        .into_iter()
        .map(|((object_type, _), record)| {
            let mut entry = Json::object([("object_type", Json::from(object_type.as_str()))]);
            entry.merge(record.to_json());
            entry
        })
        .collect();
    json_response(
        StatusCode::OK,
        &Json::object([("strict", Json::Bool(store.strict)), ("records", Json::Array(list))]),
    )
}

/// `POST /_records {"records": [{"object_type": "deals", "id": "123", "properties": {...}}]}`.
async fn add_records(State(crm): State<Arc<Crm>>, body: Bytes) -> Response {
    let usage = r#"expected {"records": [{"object_type": "<type>", "id": "<id>", "properties": {...}}]}"#;
    let parsed = Json::parse_bytes(&body).ok();
    let Some(entries) = parsed
        .as_ref()
        .and_then(|value| value.get("records"))
        .and_then(Json::as_array)
    else {
        return json_response(StatusCode::BAD_REQUEST, &Json::object([("error", Json::from(usage))]));
    };

    let mut records = Vec::new();
    for entry in entries {
        let object_type = entry.get("object_type").and_then(Json::as_str);
        let id = entry.get("id").and_then(Json::scalar_text);
        let (Some(object_type), Some(id)) = (object_type, id) else {
            return json_response(StatusCode::BAD_REQUEST, &Json::object([("error", Json::from(usage))]));
        };
        let properties = match entry.get("properties") {
            None | Some(Json::Null) => Json::Object(Vec::new()),
            Some(Json::Object(members)) => match stringify_properties(members) {
                Ok(properties) => properties,
                Err(message) => {
                    return json_response(StatusCode::BAD_REQUEST, &Json::object([("error", Json::from(message))]));
                }
            },
            Some(_) => {
                return json_response(StatusCode::BAD_REQUEST, &Json::object([("error", Json::from(usage))]));
            }
        };
        records.push((object_type.to_owned(), id, properties));
    }

    let mut store = crm.store();
    store.strict = true;
    for (object_type, id, properties) in records {
        store.insert_record(&object_type, &id, properties);
    }
    json_response(
        StatusCode::OK,
        &Json::object([
            ("strict", Json::Bool(true)),
            ("records", Json::from(store.records.len() as u64)),
        ]),
    )
}

async fn reset_records(State(crm): State<Arc<Crm>>) -> StatusCode {
    let mut store = crm.store();
    store.strict = false;
    store.records.clear();
    StatusCode::NO_CONTENT
}
