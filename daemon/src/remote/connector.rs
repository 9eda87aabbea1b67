//! How a link reaches another fsed: [`Connector`] returns a fresh byte stream to an address.
//! [`Plain`] reaches `unix:/path` addresses (another fsed's local socket on the same machine);
//! [`Tls`] also reaches `host:port` addresses, over mutual TLS 1.3 with the enrolled identity
//! (`fsed_client::tls`). Tests give their own.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A boxed future of a new stream, or why there is none.
pub type Connecting<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn Stream>, String>> + Send + 'a>>;

/// Opens streams to other fseds.
pub trait Connector: Send + Sync + 'static {
    /// A new stream to `address` (`unix:/path` or `host:port`).
    fn connect<'a>(&'a self, address: &'a str) -> Connecting<'a>;
}

/// Reaches `unix:/path` addresses; refuses `host:port` (that needs mutual TLS).
pub struct Plain;

impl Connector for Plain {
    fn connect<'a>(&'a self, address: &'a str) -> Connecting<'a> {
        Box::pin(async move {
            match address.strip_prefix("unix:") {
                Some(path) => tokio::net::UnixStream::connect(path)
                    .await
                    .map(|s| Box::new(s) as Box<dyn Stream>)
                    .map_err(|e| format!("{path}: {e}")),
                None => Err(format!(
                    "{address}: a network address needs mutual TLS (an enrolled identity)"
                )),
            }
        })
    }
}

/// Reaches `host:port` addresses over mutual TLS 1.3 with an enrolled identity (the server
/// verified against the identity's CA under `fsed.practice`), and `unix:/path` addresses as
/// [`Plain`] does.
pub struct Tls {
    /// The client configuration, or why the identity could not be loaded (then every
    /// network address is refused with that reason, which the doctor shows).
    config: Result<std::sync::Arc<rustls::ClientConfig>, String>,
}

impl Tls {
    /// The identity of `dir` (as `fsectl enroll --out` writes it).
    pub fn load(dir: &std::path::Path) -> Tls {
        let config = fsed_client::tls::Identity::load(dir)
            .and_then(|id| fsed_client::tls::client_config(&id))
            .map_err(|e| format!("identity {}: {e}", dir.display()));
        Tls { config }
    }
}

impl Connector for Tls {
    fn connect<'a>(&'a self, address: &'a str) -> Connecting<'a> {
        if address.starts_with("unix:") {
            return Plain.connect(address);
        }
        Box::pin(async move {
            let config = self.config.as_ref().map_err(Clone::clone)?;
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| format!("{address}: {e}"))?;
            // One request line at a time, each waited for: no batching to wait for.
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config))
                .connect(fsed_client::tls::server_name(), tcp)
                .await
                .map_err(|e| format!("{address}: TLS: {e}"))?;
            Ok(Box::new(tls) as Box<dyn Stream>)
        })
    }
}
