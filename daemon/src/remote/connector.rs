//! How a link reaches another fsed: [`Connector`] returns a fresh byte stream to an address.
//! [`Plain`] reaches `unix:/path` addresses (another fsed's local socket on the same machine);
//! `host:port` addresses need mutual TLS, which the network layer provides.

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
