//! Manual uploads of local files (`bridgectl upload <paths…> --contact C --folder F`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::mapping::Target;
use super::ports::UploadLedger;
use super::uploader::{Prepared, UploadOutcome, Uploader, check_file, external_refs_text};
use super::{Channel, FailureLog};
use crate::json::Node;
use crate::ports::{DocumentStore, InfraError, MessageQueue};
use crate::recordengine::{DocumentApi, FileBody};
use crate::records::Origin;

/// The outcome for one local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUpload {
    pub path: PathBuf,
    pub outcome: UploadOutcome,
}

/// The correlation key of a local file: `file-` and 40 hex digits of SHA-256
/// over its content digest, target and name. Uploading the same file to the
/// same place twice is therefore recognised and skipped.
pub fn local_correlation_key(content_sha256: &str, target: &Target, filename: &str) -> String {
    let text = format!(
        "file\n{content_sha256}\n{}\n{}\n{}\n{filename}",
        target.contact_id,
        target.folder_id,
        target.profile_id.map(|id| id.to_string()).unwrap_or_default()
    );
    format!("file-{}", &hex::encode(Sha256::digest(text.as_bytes()))[..40])
}

/// Uploads local files one after another through the same claim, upload and
/// record steps as S3 objects. Files are streamed, never read into memory whole.
///
/// Rejected files (unsupported type, empty, unreadable) get no failure record
/// or alert, because the person running the command sees the outcome at once.
/// Upload failures are recorded and alerted as for S3 objects.
pub async fn upload_local_files<S, R, F, Q>(
    uploader: &Uploader<S, R, F, Q>,
    paths: &[PathBuf],
    target: &Target,
    deadline: Option<Instant>,
) -> Vec<LocalUpload>
where
    S: DocumentStore + UploadLedger,
    R: DocumentApi,
    F: FailureLog,
    Q: MessageQueue,
{
    let mut results = Vec::with_capacity(paths.len());
    for path in paths {
        let outcome = upload_one(uploader, path, target, deadline).await;
        tracing::info!(path = %path.display(), category = outcome.category(), ?outcome, "local file processed");
        results.push(LocalUpload {
            path: path.clone(),
            outcome,
        });
    }
    results
}

async fn upload_one<S, R, F, Q>(
    uploader: &Uploader<S, R, F, Q>,
    path: &Path,
    target: &Target,
    deadline: Option<Instant>,
) -> UploadOutcome
where
    S: DocumentStore + UploadLedger,
    R: DocumentApi,
    F: FailureLog,
    Q: MessageQueue,
{
    let reject = |reason: String| UploadOutcome::Rejected {
        reason,
        failure_id: None,
    };
    let Some(filename) = path.file_name().and_then(|name| name.to_str()).map(str::to_owned) else {
        return reject(format!("{} has no UTF-8 file name", path.display()));
    };
    let size = match tokio::fs::metadata(path).await {
        Ok(metadata) if metadata.is_file() => metadata.len(),
        Ok(_) => return reject(format!("{} is not a regular file", path.display())),
        Err(error) => return reject(format!("cannot read {}: {error}", path.display())),
    };
    if let Err(reason) = check_file(&filename, size) {
        return reject(reason);
    }
    let digest = match sha256_file(path).await {
        Ok(digest) => digest,
        Err(error) => return reject(format!("cannot read {}: {error}", path.display())),
    };

    let correlation_key = local_correlation_key(&digest, target, &filename);
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let ours = BTreeMap::from([
        ("record_id".to_owned(), Node::String(correlation_key.clone())),
        ("record_type".to_owned(), Node::String("local_file".into())),
        ("sha256".to_owned(), Node::String(digest.clone())),
        ("channel".to_owned(), Node::String(Channel::Bridgectl.as_str().into())),
    ]);
    let external_refs = match external_refs_text(None, ours) {
        Ok(text) => text,
        Err(reason) => return reject(reason),
    };
    let prepared = Prepared {
        origin: Origin {
            correlation_key: correlation_key.clone(),
            bucket: None,
            key: Some(absolute.display().to_string()),
            version_id: None,
            etag: Some(digest),
            size: i64::try_from(size).ok(),
            uploaded_at: None,
            channel: Some(Channel::Bridgectl.as_str().into()),
        },
        correlation_key,
        filename,
        size,
        target: target.clone(),
        external_refs,
        channel: Channel::Bridgectl,
        replay_body: None,
        s3_version_id: None,
    };

    let open_path = path.to_path_buf();
    let open = move || async move { open_file(&open_path, size).await };
    uploader.upload_prepared(prepared, open, deadline).await
}

async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

// NOTE: a file changed between hashing and sending is uploaded with its new
// content under the old digest; only a change of length is detected (the
// multipart body checks the declared size).
async fn open_file(path: &Path, size: u64) -> Result<Option<FileBody>, InfraError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|error| InfraError::new("local file", "open", format!("{}: {error}", path.display())))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)
        .map(|chunk| chunk.map_err(|error| Box::new(error) as crate::recordengine::BoxError));
    Ok(Some(FileBody {
        length: size,
        stream: Box::pin(stream),
    }))
}
