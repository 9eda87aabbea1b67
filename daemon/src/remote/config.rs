//! `[remote]`: the other fseds whose cards this one may use, the identity it presents to them,
//! and how long one remote card operation may take.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `[remote]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteSection {
    /// The enrolled identity presented to the other fseds (`ca.crt`, `client.crt`,
    /// `client.key`, `enrollment.json`, as `fsectl enroll --out` writes them); unset:
    /// `<state_dir>/network/identity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_dir: Option<PathBuf>,
    /// Longest wait, in milliseconds, for one remote card operation (100 to 600000).
    pub timeout_ms: u64,
    /// The other fseds (`[[remote.fsed]]`), none by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fsed: Vec<RemoteFsed>,
}

impl Default for RemoteSection {
    fn default() -> Self {
        RemoteSection {
            identity_dir: None,
            timeout_ms: 10_000,
            fsed: Vec::new(),
        }
    }
}

/// One other fsed (`[[remote.fsed]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteFsed {
    /// Its name here (shown in `cards.list` as the card's `location.fsed`), unique.
    pub name: String,
    /// Where its API listens: `host:port` (mutual TLS) or `unix:/path` (its local socket, on
    /// the same machine).
    pub address: String,
}

impl RemoteSection {
    /// The identity directory in use.
    pub fn identity_dir(&self, state_dir: &Path) -> PathBuf {
        self.identity_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("network").join("identity"))
    }

    /// What is wrong with the section: each problem as (key, reason).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(100..=600_000).contains(&self.timeout_ms) {
            out.push((
                "remote.timeout_ms",
                format!("{} is out of range (100 to 600000)", self.timeout_ms),
            ));
        }
        for (i, f) in self.fsed.iter().enumerate() {
            if f.name.is_empty() || f.name == "local" || f.name.len() > 64 {
                out.push((
                    "remote.fsed.name",
                    format!(
                        "[[remote.fsed]] {}: 1 to 64 characters, not \"local\"",
                        i + 1
                    ),
                ));
            }
            if self.fsed[..i].iter().any(|g| g.name == f.name) {
                out.push((
                    "remote.fsed.name",
                    format!("[[remote.fsed]] {}: {:?} is named twice", i + 1, f.name),
                ));
            }
            if f.address.strip_prefix("unix:").is_none() && f.address.rsplit_once(':').is_none() {
                out.push((
                    "remote.fsed.address",
                    format!(
                        "[[remote.fsed]] {}: {:?} is neither host:port nor unix:/path",
                        i + 1,
                        f.address
                    ),
                ));
            }
        }
        out
    }
}
