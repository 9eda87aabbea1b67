//! `[app]`: the Vitale app's challenges and tokens.

use serde::{Deserialize, Serialize};

/// `[app]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppSection {
    /// Seconds a challenge of `presence.challenge` stays usable (10 to 3600).
    pub challenge_ttl_secs: u64,
    /// Longest lifetime (`expiresAt − issuedAt`) of a token accepted, seconds (10 to 3600).
    pub max_token_lifetime_secs: u64,
}

impl Default for AppSection {
    fn default() -> Self {
        AppSection {
            challenge_ttl_secs: 300,
            max_token_lifetime_secs: 300,
        }
    }
}

impl AppSection {
    /// What is wrong with the section: each problem as (key, reason).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        [
            ("app.challenge_ttl_secs", self.challenge_ttl_secs),
            ("app.max_token_lifetime_secs", self.max_token_lifetime_secs),
        ]
        .into_iter()
        .filter(|(_, v)| !(10..=3600).contains(v))
        .map(|(k, v)| (k, format!("{v} is out of range (10 to 3600 seconds)")))
        .collect()
    }
}
