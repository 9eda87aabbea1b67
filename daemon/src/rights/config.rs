//! `[rights]`: rights online (ADRi): whether fsed asks the insurer for the rights of the day
//! when a card's are closed or old, how old is too old, how long an answer is reused and
//! waited for, and what happens when none comes.

use serde::{Deserialize, Serialize};

/// What `fse.create` does when the card's rights call for a lookup and no online answer can
/// be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Offline {
    /// The card's rights are used, and the sheet records why (`rights.fallback`).
    Card,
    /// The sheet is refused with `RIGHTS_STALE`.
    Refuse,
}

/// `[rights]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RightsSection {
    /// Ask the insurer online (over the configured transport) when a card's rights are closed
    /// or older than `max_card_age_days`. Off by default: see `CONFIG.md`.
    pub enabled: bool,
    /// A card's rights older than this many days (today − the first day of its rights period,
    /// the period the card was last updated with) call for a lookup (0 to 3650).
    pub max_card_age_days: u32,
    /// An online answer is reused from the cache for this many seconds, and an answer older
    /// than this (its `answeredAt`) is refused (60 to 604800).
    pub max_answer_age_secs: u64,
    /// Longest wait for an online answer, in milliseconds (50 to 60000).
    pub timeout_ms: u64,
    /// Without a usable answer: `card` (use the card's rights, recorded on the sheet) or
    /// `refuse` (`RIGHTS_STALE`).
    pub offline: Offline,
}

impl Default for RightsSection {
    fn default() -> Self {
        RightsSection {
            enabled: false,
            max_card_age_days: 90,
            max_answer_age_secs: 86_400,
            timeout_ms: 2_000,
            offline: Offline::Card,
        }
    }
}

impl RightsSection {
    /// What is wrong with the section: each problem as (key, reason).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.max_card_age_days > 3650 {
            out.push((
                "rights.max_card_age_days",
                format!("{} is out of range (0 to 3650)", self.max_card_age_days),
            ));
        }
        if !(60..=604_800).contains(&self.max_answer_age_secs) {
            out.push((
                "rights.max_answer_age_secs",
                format!(
                    "{} is out of range (60 to 604800)",
                    self.max_answer_age_secs
                ),
            ));
        }
        if !(50..=60_000).contains(&self.timeout_ms) {
            out.push((
                "rights.timeout_ms",
                format!("{} is out of range (50 to 60000)", self.timeout_ms),
            ));
        }
        out
    }
}
