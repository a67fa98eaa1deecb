//! Starting a router on the loopback interface and stopping it again.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long [`ServerHandle::shutdown`] waits for open requests (a fault delay, say) before it aborts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Shutdown signal for a server and its background tasks.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    receiver: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// Completes once shutdown has been requested or the handle has been dropped.
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // An error means the sender is gone, which also means stop.
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }

    pub fn is_stopped(&self) -> bool {
        *self.receiver.borrow()
    }
}

/// The sending half of a [`ShutdownSignal`], held by the [`ServerHandle`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

impl ShutdownTrigger {
    /// Creates a trigger and the signal that servers and tasks listen to.
    pub fn new() -> (ShutdownTrigger, ShutdownSignal) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger { sender }, ShutdownSignal { receiver })
    }

    fn fire(&self) {
        self.sender.send_replace(true);
    }
}

/// A running server: its address and the means to stop it.
///
/// Dropping the handle also stops the server, without waiting for it.
#[derive(Debug)]
pub struct ServerHandle {
    name: &'static str,
    addr: SocketAddr,
    base_url: String,
    trigger: ShutdownTrigger,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// Returns the server's name as used in logs and in the binary's URL listing.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The base URL joined with `path`, which should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Stops accepting connections, lets open requests finish for up to five
    /// seconds, then aborts the rest.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.trigger.fire();
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) if join_error.is_cancelled() => Ok(()),
            Ok(Err(join_error)) => Err(io::Error::other(join_error)),
            Err(_) => {
                tracing::warn!(
                    server = self.name,
                    "open requests did not finish in time; aborting them"
                );
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.trigger.fire();
    }
}

/// Binds `127.0.0.1:port` (0 picks a free port) and serves `router` on the
/// current tokio runtime until `trigger` fires.
pub async fn serve(
    name: &'static str,
    port: u16,
    router: Router,
    trigger: ShutdownTrigger,
    signal: ShutdownSignal,
) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|error| io::Error::new(error.kind(), format!("{name}: cannot bind 127.0.0.1:{port}: {error}")))?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    tracing::info!(server = name, url = %base_url, "server started");

    let task = tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { signal.wait().await })
            .await;
        tracing::info!(server = name, "server stopped");
        result
    });

    Ok(ServerHandle {
        name,
        addr,
        base_url,
        trigger,
        task: Some(task),
    })
}
