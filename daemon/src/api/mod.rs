//! The local API: JSON-RPC 2.0, one JSON object per line, on a Unix socket.
//! Each connection is served by its own task; a bad line gets an error reply
//! naming the problem and the connection stays open. Methods are documented
//! in `daemon/API.md`.
//!
//! Parts: [`server`] (listener, connections, peer credentials, limits, idle timeout),
//! [`jsonrpc`] (framing, ids, replies, error messages), [`dispatch`] (method name → handler,
//! the checks before it runs), `params` (parameters decoded, fields named), `methods` (each
//! method's handler by group). The handlers' shared state is [`crate::context::Context`].

pub mod dispatch;
pub mod jsonrpc;
mod methods;
mod params;
pub mod server;
#[cfg(test)]
mod test_support;

pub use crate::context::Context;
pub use crate::json::JsonText;
pub use dispatch::{handle_line, METHODS};
pub use jsonrpc::{scrub, Id, Reply, MAX_LINE};
pub use methods::events::EVENT_NAMES;
pub use server::{serve, serve_with, Conn, Settings};
