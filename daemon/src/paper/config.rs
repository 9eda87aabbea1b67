//! `[paper]`: where the paper duplicates go and when fsed makes them by itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The most days before a sending deadline `paper.days_before` may look.
pub const MAX_DAYS_BEFORE: u32 = 400;
/// The longest `paper.check_secs`: a day.
pub const MAX_CHECK_SECS: u64 = 86_400;

/// `[paper]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaperSection {
    /// Where the duplicates are written (`<practitioner id>-<sheet number>.pdf`); relative
    /// paths are under the state directory; unset: a `paper` folder beside the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Whether fsed makes duplicates by itself: for a degraded-mode sheet once committed, and
    /// for a sheet still unsent on its sending deadline day (`fse.duplicate` works either way).
    pub auto: bool,
    /// Days before its sending deadline an unsent sheet gets its automatic duplicate (0: on
    /// the deadline day; 0 to 400), to leave time to post the paper.
    pub days_before: u32,
    /// Seconds between two looks for unsent sheets at their deadline (1 to 86400); the first
    /// look is at start-up.
    pub check_secs: u64,
}

impl Default for PaperSection {
    fn default() -> Self {
        PaperSection {
            dir: None,
            auto: true,
            days_before: 0,
            check_secs: 3600,
        }
    }
}

impl PaperSection {
    /// The folder in use: `dir` (under `state_dir` when relative), else `paper` beside the
    /// database file `database`.
    pub fn dir(&self, state_dir: &Path, database: &Path) -> PathBuf {
        let under_state = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                state_dir.join(p)
            }
        };
        match &self.dir {
            Some(d) => under_state(d),
            None => under_state(database)
                .parent()
                .map_or_else(|| state_dir.join("paper"), |p| p.join("paper")),
        }
    }

    /// The values that cannot work, each with its key.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.days_before > MAX_DAYS_BEFORE {
            out.push((
                "paper.days_before",
                format!("must be at most {MAX_DAYS_BEFORE} days"),
            ));
        }
        if !(1..=MAX_CHECK_SECS).contains(&self.check_secs) {
            out.push((
                "paper.check_secs",
                format!("must be between 1 and {MAX_CHECK_SECS} seconds"),
            ));
        }
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            out.push(("paper.dir", "must not be empty (unset it instead)".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_defaults_beside_the_database() {
        let s = PaperSection::default();
        let state = Path::new("/var/lib/fsed");
        assert_eq!(
            s.dir(state, Path::new("fsed.db")),
            Path::new("/var/lib/fsed/paper")
        );
        assert_eq!(
            s.dir(state, Path::new("/srv/q/fsed.db")),
            Path::new("/srv/q/paper")
        );
        let s = PaperSection {
            dir: Some("papiers".into()),
            ..PaperSection::default()
        };
        assert_eq!(
            s.dir(state, Path::new("fsed.db")),
            Path::new("/var/lib/fsed/papiers")
        );
        assert!(PaperSection::default().problems().is_empty());
        let bad = PaperSection {
            days_before: 401,
            check_secs: 0,
            dir: Some(PathBuf::new()),
            ..PaperSection::default()
        };
        let keys: Vec<&str> = bad.problems().iter().map(|p| p.0).collect();
        assert_eq!(keys, ["paper.days_before", "paper.check_secs", "paper.dir"]);
    }
}
