//! How a command fails, and the exit code each way of failing gives (listed in `main.rs`).

/// A call that did not give a result.
pub(crate) enum CallError {
    /// fsed could not be reached, or answered nonsense.
    Unreachable(String),
    /// fsed answered an error.
    Remote(fsed_client::PeerError),
    /// The command itself failed, with its exit code.
    Exit(String, u8),
}

impl From<fsed_client::Error> for CallError {
    fn from(e: fsed_client::Error) -> CallError {
        match e {
            fsed_client::Error::Peer(p) => CallError::Remote(p),
            other => CallError::Unreachable(other.to_string()),
        }
    }
}
