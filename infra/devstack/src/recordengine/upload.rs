//! `POST /api/documents/upload`: multipart form upload, validated like RecordEngine's.
//!
//! Form parts: `file` (with a filename), `contact_id` and `folder_id` (integer
//! text), optional `profile_id` (integer text) and optional `external_refs` (a
//! JSON object serialised as a string). The file part is hashed chunk by chunk
//! and its bytes are dropped, so memory use does not grow with the file size.
//!
//! Order of checks: bearer token (401), injected fault, form fields (422 with a
//! list of field errors), file extension (422).

use std::sync::Arc;

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_DISPOSITION;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{Document, Simulator, detail, field_error, unprocessable};
use crate::json::Json;
use crate::recordengine::export;
use crate::util::{json_response, now_rfc3339};

/// File extensions RecordEngine accepts, lowercase.
pub const SUPPORTED_EXTENSIONS: [&str; 12] = [
    "pdf", "jpg", "jpeg", "png", "docx", "xlsx", "csv", "txt", "html", "mp3", "wav", "m4a",
];

/// The largest accepted text field (`external_refs` and the ids), in bytes.
pub const MAX_TEXT_FIELD_BYTES: usize = 1024 * 1024;

/// One upload as received, for `GET /_requests`.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    /// The created document's id; `None` when the upload was rejected or faulted.
    pub id: Option<i64>,
    pub filename: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    /// Text fields exactly as received.
    pub contact_id: Option<String>,
    pub folder_id: Option<String>,
    pub profile_id: Option<String>,
    pub external_refs: Option<String>,
    pub received_at: String,
    pub response_status: u16,
}

impl UploadRecord {
    pub fn to_json(&self) -> Json {
        Json::object([
            ("id", Json::from(self.id)),
            ("filename", Json::from(self.filename.clone())),
            ("size", Json::from(self.size)),
            ("sha256", Json::from(self.sha256.clone())),
            ("content_type", Json::from(self.content_type.clone())),
            (
                "fields",
                Json::object([
                    ("contact_id", Json::from(self.contact_id.clone())),
                    ("folder_id", Json::from(self.folder_id.clone())),
                    ("profile_id", Json::from(self.profile_id.clone())),
                    ("external_refs", Json::from(self.external_refs.clone())),
                ]),
            ),
            ("received_at", Json::from(self.received_at.as_str())),
            ("response_status", Json::from(u64::from(self.response_status))),
        ])
    }
}

/// The file part of an upload.
#[derive(Debug, Clone, Default)]
struct FilePart {
    /// `None` when the part had no filename parameter.
    filename: Option<String>,
    content_type: Option<String>,
    size: u64,
    sha256: String,
}

/// The form as read from the request, before validation.
#[derive(Debug, Default)]
struct ReceivedForm {
    file: Option<FilePart>,
    contact_id: Option<String>,
    folder_id: Option<String>,
    profile_id: Option<String>,
    external_refs: Option<String>,
    /// Text fields that were not UTF-8 or too long, by name.
    unreadable: Vec<(String, String)>,
}

/// The validated form.
struct ValidForm {
    file: FilePart,
    filename: String,
    contact_id: i64,
    folder_id: i64,
    profile_id: Option<i64>,
    external_refs: Json,
}

pub(super) async fn upload(State(simulator): State<Arc<Simulator>>, request: Request) -> Response {
    if let Err(response) = simulator.authorize(request.headers()) {
        return *response;
    }
    let received_at = now_rfc3339();
    let fault = simulator.faults.take();

    // A body that is not multipart/form-data has none of the required fields,
    // which the field validation below reports.
    let form = match Multipart::from_request(request, &()).await {
        Ok(multipart) => match read_form(multipart).await {
            Ok(form) => form,
            Err(error) => {
                tracing::warn!(%error, "failed to read multipart upload");
                let status = error.status();
                let message = format!("Could not read the multipart body: {}", error.body_text());
                return detail(status, &message);
            }
        },
        Err(_) => ReceivedForm::default(),
    };
    let mut record = UploadRecord {
        id: None,
        filename: form.file.as_ref().and_then(|file| file.filename.clone()),
        size: form.file.as_ref().map(|file| file.size),
        sha256: form.file.as_ref().map(|file| file.sha256.clone()),
        content_type: form.file.as_ref().and_then(|file| file.content_type.clone()),
        contact_id: form.contact_id.clone(),
        folder_id: form.folder_id.clone(),
        profile_id: form.profile_id.clone(),
        external_refs: form.external_refs.clone(),
        received_at,
        response_status: 0,
    };

    if let Some(fault) = fault.as_ref().filter(|fault| fault.status != 0) {
        tracing::info!(status = fault.status, "responding to upload with injected fault");
        record.response_status = fault.status;
        simulator.store().uploads.push(record);
        tokio::time::sleep(fault.delay()).await;
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return fault.body_override(status).unwrap_or_else(|| {
            let mut response = detail(status, status.canonical_reason().unwrap_or("Injected fault"));
            fault.apply_retry_after(&mut response);
            response
        });
    }

    let valid = match validate(form) {
        Ok(valid) => valid,
        Err(response) => {
            record.response_status = response.status().as_u16();
            simulator.store().uploads.push(record);
            return *response;
        }
    };

    let document = {
        let mut store = simulator.store();
        let id = store.next_id;
        store.next_id += 1;
        let document = Document {
            id,
            filename: valid.filename.clone(),
            status: "New".into(),
            contact_id: valid.contact_id,
            folder_id: valid.folder_id,
            profile_id: valid.profile_id,
            external_refs: valid.external_refs,
            created_at: now_rfc3339(),
        };
        store.documents.insert(id, document.clone());
        record.id = Some(id);
        record.response_status = 200;
        store.uploads.push(record);
        document
    };
    tracing::info!(id = document.id, filename = %document.filename, size = valid.file.size, "document uploaded");
    export::schedule_export(&simulator, document.id);

    if let Some(fault) = &fault {
        // Status 0: the document exists, but the response comes late, as from a
        // server that finished after the client gave up.
        tracing::info!(
            id = document.id,
            delay_ms = fault.delay_ms,
            "delaying upload answer as injected"
        );
        tokio::time::sleep(fault.delay()).await;
    }
    json_response(
        StatusCode::OK,
        &Json::object([
            ("id", Json::from(document.id)),
            ("filename", Json::from(document.filename.as_str())),
            ("status", Json::from(document.status.as_str())),
            ("contact_id", Json::from(document.contact_id)),
            ("folder_id", Json::from(document.folder_id)),
            ("created_at", Json::from(document.created_at.as_str())),
        ]),
    )
}

/// Reads every part. The `file` part is hashed as it streams; other parts are read as text.
async fn read_form(mut multipart: Multipart) -> Result<ReceivedForm, MultipartError> {
    let mut form = ReceivedForm::default();
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" if form.file.is_none() => form.file = Some(hash_file(&mut field).await?),
            "contact_id" | "folder_id" | "profile_id" | "external_refs" => {
                let value = match read_text(&mut field).await? {
                    Ok(text) => text,
                    Err(problem) => {
                        form.unreadable.push((name, problem));
                        continue;
                    }
                };
                let slot = match name.as_str() {
                    "contact_id" => &mut form.contact_id,
                    "folder_id" => &mut form.folder_id,
                    "profile_id" => &mut form.profile_id,
                    _ => &mut form.external_refs,
                };
                *slot = Some(value);
            }
            // Unknown parts and a second file part are read and dropped.
            _ => while field.chunk().await?.is_some() {},
        }
    }
    Ok(form)
}

async fn hash_file(field: &mut Field<'_>) -> Result<FilePart, MultipartError> {
    let filename = field
        .headers()
        .get(CONTENT_DISPOSITION)
        .and_then(|value| content_disposition_filename(value.as_bytes()))
        .or_else(|| field.file_name().map(str::to_owned));
    let content_type = field.content_type().map(str::to_owned);

    let mut hasher = Sha256::new();
    let mut size = 0_u64;
    while let Some(chunk) = field.chunk().await? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    Ok(FilePart {
        filename,
        content_type,
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Reads a text part, or explains why it cannot be used (too long or not UTF-8).
async fn read_text(field: &mut Field<'_>) -> Result<Result<String, String>, MultipartError> {
    let mut bytes = Vec::new();
    let mut too_long = false;
    while let Some(chunk) = field.chunk().await? {
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
            too_long = true;
            continue;
        }
        bytes.extend_from_slice(&chunk);
    }
    if too_long {
        return Ok(Err(format!("Value is longer than {MAX_TEXT_FIELD_BYTES} bytes")));
    }
    Ok(String::from_utf8(bytes).map_err(|_| "Value is not valid UTF-8 text".to_owned()))
}

fn validate(form: ReceivedForm) -> Result<ValidForm, Box<Response>> {
    let mut errors = Vec::new();
    for (name, problem) in &form.unreadable {
        errors.push(field_error("value_error", &["body", name], problem, Json::Null));
    }

    let file = match form.file {
        None => {
            errors.push(field_error("missing", &["body", "file"], "Field required", Json::Null));
            None
        }
        Some(file) if file.filename.as_deref().is_none_or(str::is_empty) => {
            errors.push(field_error(
                "value_error",
                &["body", "file"],
                "Expected a file: the part has no filename in its Content-Disposition header",
                Json::Null,
            ));
            None
        }
        Some(file) => Some(file),
    };

    let unreadable = |name: &str| form.unreadable.iter().any(|(field, _)| field == name);
    let mut integer = |name: &str, value: &Option<String>, required: bool| -> Option<i64> {
        match value {
            None if required && !unreadable(name) => {
                errors.push(field_error("missing", &["body", name], "Field required", Json::Null));
                None
            }
            None => None,
            Some(text) => match text.trim().parse::<i64>() {
                Ok(number) => Some(number),
                Err(_) => {
                    errors.push(field_error(
                        "int_parsing",
                        &["body", name],
                        "Input must be an integer",
                        Json::from(text.as_str()),
                    ));
                    None
                }
            },
        }
    };
    let contact_id = integer("contact_id", &form.contact_id, true);
    let folder_id = integer("folder_id", &form.folder_id, true);
    let profile_id = integer("profile_id", &form.profile_id, false);

    let external_refs = match form.external_refs.as_deref() {
        None => Json::Object(Vec::new()),
        Some(text) => match Json::parse(text) {
            Ok(value @ Json::Object(_)) => value,
            Ok(other) => {
                errors.push(field_error(
                    "value_error",
                    &["body", "external_refs"],
                    &format!(
                        "external_refs must be a JSON object serialised as a string, got {}",
                        other.type_name()
                    ),
                    Json::from(text),
                ));
                Json::Null
            }
            Err(error) => {
                errors.push(field_error(
                    "value_error",
                    &["body", "external_refs"],
                    &format!(
                        "external_refs must be a JSON object serialised as a string; it is not valid JSON: {error}"
                    ),
                    Json::from(text),
                ));
                Json::Null
            }
        },
    };

    let (Some(file), Some(contact_id), Some(folder_id), true) = (file, contact_id, folder_id, errors.is_empty()) else {
        return Err(Box::new(unprocessable(errors)));
    };

    let filename = file.filename.clone().unwrap_or_default();
    // A name like ".pdf" has no stem, so it has no extension either.
    let extension = filename
        .rsplit_once('.')
        .filter(|(stem, _)| !stem.is_empty())
        .map(|(_, extension)| extension.to_lowercase())
        .unwrap_or_default();
    if !SUPPORTED_EXTENSIONS.contains(&extension.as_str()) {
        let extension_text = if extension.is_empty() {
            "(none)".to_owned()
        } else {
            format!(".{extension}")
        };
        let message = format!(
            "Unsupported file type {extension_text} for '{filename}'. Supported types: {}",
            SUPPORTED_EXTENSIONS.join(", ")
        );
        return Err(Box::new(detail(StatusCode::UNPROCESSABLE_ENTITY, &message)));
    }

    Ok(ValidForm {
        file,
        filename,
        contact_id,
        folder_id,
        profile_id,
        external_refs,
    })
}

/// Reads the file name from a `Content-Disposition` value. The RFC 5987 form
/// `filename*=UTF-8''<percent-encoded>` wins over `filename=`, as RFC 6266
/// requires. A plain `filename` is taken as raw UTF-8, which is what browsers
/// and HTTP clients send for non-ASCII names.
pub fn content_disposition_filename(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let parameters = disposition_parameters(&text);

    let extended = parameters
        .iter()
        .find(|(name, _)| name == "filename*")
        .and_then(|(_, value)| decode_extended_value(value));
    extended.or_else(|| {
        parameters
            .into_iter()
            .find(|(name, _)| name == "filename")
            .map(|(_, value)| value)
    })
}

/// Splits `form-data; name="file"; filename="a;b.pdf"` into lowercase names and unquoted values.
fn disposition_parameters(text: &str) -> Vec<(String, String)> {
    let mut parameters = Vec::new();
    let Some((_, mut rest)) = text.split_once(';') else {
        return parameters;
    };
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return parameters;
        }
        let Some(equals) = rest.find('=') else {
            return parameters;
        };
        let name = rest[..equals].trim().to_ascii_lowercase();
        rest = rest[equals + 1..].trim_start();

        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut consumed = quoted.len();
            let mut chars = quoted.char_indices();
            while let Some((index, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        consumed = index + 1;
                        break;
                    }
                    other => value.push(other),
                }
            }
            rest = &quoted[consumed..];
            value
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            let value = rest[..end].trim().to_owned();
            rest = &rest[end..];
            value
        };
        parameters.push((name, value));
    }
}

/// Decodes an RFC 5987 value, `charset'language'percent-encoded`. UTF-8 and ISO-8859-1 are supported.
fn decode_extended_value(value: &str) -> Option<String> {
    let mut parts = value.splitn(3, '\'');
    let charset = parts.next()?.trim();
    let _language = parts.next()?;
    let encoded = parts.next()?;
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(encoded).collect();
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_filename() {
        assert_eq!(
            content_disposition_filename(br#"form-data; name="file"; filename="invoice.pdf""#).as_deref(),
            Some("invoice.pdf")
        );
        assert_eq!(
            content_disposition_filename(b"form-data; name=file; filename=invoice.pdf").as_deref(),
            Some("invoice.pdf")
        );
    }

    #[test]
    fn raw_utf8_filename() {
        let value = "form-data; name=\"file\"; filename=\"2024年 发票.pdf\"";

        assert_eq!(
            content_disposition_filename(value.as_bytes()).as_deref(),
            Some("2024年 发票.pdf")
        );
    }

    #[test]
    fn quoted_semicolon_and_escape() {
        assert_eq!(
            content_disposition_filename(br#"form-data; name="file"; filename="a;b \"c\".pdf""#).as_deref(),
            Some(r#"a;b "c".pdf"#)
        );
    }

    #[test]
    fn extended_filename_wins() {
        let value = "form-data; name=\"file\"; filename=\"fallback.pdf\"; filename*=UTF-8''2024%E5%B9%B4%20%E5%8F%91%E7%A5%A8.pdf";

        assert_eq!(
            content_disposition_filename(value.as_bytes()).as_deref(),
            Some("2024年 发票.pdf")
        );
        assert_eq!(
            content_disposition_filename(b"form-data; name=\"file\"; filename*=iso-8859-1'de'Geb%FChr.pdf").as_deref(),
            Some("Gebühr.pdf")
        );
    }

    #[test]
    fn missing_or_undecodable_filename() {
        assert_eq!(content_disposition_filename(br#"form-data; name="contact_id""#), None);
        assert_eq!(content_disposition_filename(b"form-data"), None);
        assert_eq!(
            content_disposition_filename(b"form-data; name=\"file\"; filename*=koi8-r''%C1").as_deref(),
            None
        );
    }
}
