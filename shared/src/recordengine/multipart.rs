//! A hand-built `multipart/form-data` body whose file part streams.
//!
//! reqwest 0.13.5's own `multipart::Form` writes a non-ASCII `filename` raw
//! too, but it escapes `"` and `\` with backslashes, which not every server
//! reads back, and it hides the end of the body from the caller. Building the
//! body here gives the exact header bytes and lets the client tell "the server
//! has every byte" apart from "the body was cut short", which decides whether a
//! timeout leaves the upload ambiguous.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::Notify;

/// Error type of body streams: anything that can be boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A file body: a stream of chunks and its exact length in bytes.
pub struct FileBody {
    pub length: u64,
    pub stream: BoxStream<'static, Result<Bytes, BoxError>>,
}

impl FileBody {
    /// A body held in memory, for small files and tests.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes: Bytes = bytes.into();
        FileBody {
            length: bytes.len() as u64,
            stream: Box::pin(futures::stream::once(async move { Ok(bytes) })),
        }
    }
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody").field("length", &self.length).finish()
    }
}

/// Progress of a body that is being sent.
#[derive(Debug, Default)]
pub struct SendProgress {
    complete: AtomicBool,
    file_bytes: AtomicU64,
    notify: Notify,
}

impl SendProgress {
    /// Whether the HTTP client has taken the last chunk of the body.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::SeqCst)
    }

    /// File bytes handed to the HTTP client so far.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes.load(Ordering::SeqCst)
    }

    /// Waits until the body is complete. Returns at once if it already is.
    pub async fn completed(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_complete() {
                return;
            }
            notified.await;
        }
    }

    fn mark_complete(&self) {
        self.complete.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// A complete multipart body ready to send.
pub struct MultipartBody {
    /// The `Content-Type` header value, with the boundary.
    pub content_type: String,
    /// The exact `Content-Length`.
    pub length: u64,
    pub stream: BoxStream<'static, Result<Bytes, BoxError>>,
    pub progress: Arc<SendProgress>,
}

/// Quotes a `Content-Disposition` parameter value as browsers do (WHATWG
/// HTML, "multipart/form-data encoding algorithm"): LF, CR and `"` become
/// `%0A`, `%0D` and `%22`; every other character, including non-ASCII UTF-8,
/// stays raw.
pub fn quote_parameter(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for character in value.chars() {
        match character {
            '\n' => quoted.push_str("%0A"),
            '\r' => quoted.push_str("%0D"),
            '"' => quoted.push_str("%22"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// A random boundary that cannot occur in the text fields.
pub fn new_boundary() -> String {
    let value: u128 = rand::random();
    format!("recordengine-bridge-{value:032x}")
}

/// Builds a body of text fields followed by one file part named `file`.
pub fn build(
    boundary: &str,
    fields: &[(&str, String)],
    filename: &str,
    file_content_type: &str,
    file: FileBody,
) -> MultipartBody {
    let mut head = String::new();
    for (name, value) in fields {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name={}\r\n\r\n{value}\r\n",
            quote_parameter(name)
        ));
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename={}\r\nContent-Type: {file_content_type}\r\n\r\n",
        quote_parameter(filename)
    ));
    let tail = format!("\r\n--{boundary}--\r\n");

    let length = head.len() as u64 + file.length + tail.len() as u64;
    let progress = Arc::new(SendProgress::default());
    let file_stream = CheckedFile {
        inner: file.stream,
        expected: file.length,
        seen: 0,
        progress: Arc::clone(&progress),
    };
    // hyper stops polling once it has sent Content-Length bytes, so the body
    // counts as complete when its last chunk is handed over, not at the end
    // of the stream.
    let tail_progress = Arc::clone(&progress);
    let stream = futures::stream::once(async move { Ok::<_, BoxError>(Bytes::from(head)) })
        .chain(file_stream)
        .chain(futures::stream::once(async move {
            tail_progress.mark_complete();
            Ok(Bytes::from(tail))
        }));

    MultipartBody {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        length,
        stream: Box::pin(stream),
        progress,
    }
}

/// Passes file chunks through and fails the body if the file turns out
/// longer or shorter than declared, so that a truncated object is never sent
/// as a complete document.
struct CheckedFile {
    inner: BoxStream<'static, Result<Bytes, BoxError>>,
    expected: u64,
    seen: u64,
    progress: Arc<SendProgress>,
}

impl Stream for CheckedFile {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                self.progress.file_bytes.store(self.seen, Ordering::SeqCst);
                if self.seen > self.expected {
                    let message = format!("the file is longer than its declared {} bytes", self.expected);
                    return Poll::Ready(Some(Err(message.into())));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if self.seen != self.expected => {
                let message = format!(
                    "the file ended after {} of its declared {} bytes",
                    self.seen, self.expected
                );
                Poll::Ready(Some(Err(message.into())))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(body: MultipartBody) -> Result<Vec<u8>, BoxError> {
        let mut stream = body.stream;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }

    #[tokio::test]
    async fn non_ascii_filename_is_raw_utf8() {
        let body = build(
            "b",
            &[("contact_id", "5".into())],
            "2024年 发票.pdf",
            "application/pdf",
            FileBody::from_bytes(&b"%PDF"[..]),
        );
        let declared = body.length;
        let progress = Arc::clone(&body.progress);

        let bytes = collect(body).await.unwrap();

        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            "--b\r\nContent-Disposition: form-data; name=\"contact_id\"\r\n\r\n5\r\n\
             --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"2024年 发票.pdf\"\r\n\
             Content-Type: application/pdf\r\n\r\n%PDF\r\n--b--\r\n"
        );
        assert_eq!(bytes.len() as u64, declared);
        assert!(progress.is_complete());
        assert_eq!(progress.file_bytes(), 4);
    }

    #[test]
    fn quotes_and_line_breaks_are_escaped() {
        assert_eq!(quote_parameter("a\"b\r\nc.pdf"), "\"a%22b%0D%0Ac.pdf\"");
        assert_eq!(quote_parameter("this im + age.txt"), "\"this im + age.txt\"");
        assert_eq!(quote_parameter("back\\slash"), "\"back\\slash\"");
    }

    #[tokio::test]
    async fn short_file_fails_and_is_not_complete() {
        let file = FileBody {
            length: 10,
            stream: Box::pin(futures::stream::once(async { Ok(Bytes::from_static(b"12345")) })),
        };
        let body = build("b", &[], "a.txt", "text/plain", file);
        let progress = Arc::clone(&body.progress);

        let error = collect(body).await.unwrap_err();

        assert!(
            error.to_string().contains("ended after 5 of its declared 10 bytes"),
            "{error}"
        );
        assert!(!progress.is_complete());
    }

    #[tokio::test]
    async fn long_file_fails() {
        let file = FileBody {
            length: 2,
            stream: Box::pin(futures::stream::once(async { Ok(Bytes::from_static(b"12345")) })),
        };
        let error = collect(build("b", &[], "a.txt", "text/plain", file)).await.unwrap_err();

        assert!(
            error.to_string().contains("longer than its declared 2 bytes"),
            "{error}"
        );
    }

    #[test]
    fn boundaries_differ() {
        assert_ne!(new_boundary(), new_boundary());
        assert!(new_boundary().starts_with("recordengine-bridge-"));
    }
}
