//! Live reload: which keys a SIGHUP applies to the running service, the settings shared
//! with the batcher and the API, and the changes a reload reports.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::keys::KEYS;
use super::sources::leaves;
use super::Config;

impl Config {
    /// The settings a SIGHUP may change.
    pub fn live(&self) -> LiveSettings {
        LiveSettings {
            max_sheets: self.lots.max_sheets,
            max_age: self.lot_max_age(),
            deadline_alarm_days: self.lots.deadline_alarm_days,
            close_at: self.lots.close_time(),
            window: self.transport.window,
            arl_timeout: Duration::from_secs(self.transport.arl_timeout_secs),
            arl_max_resends: self.transport.arl_max_resends,
        }
    }

    /// This configuration with the live keys ([`Key::live`](super::Key::live)) of `new`: what
    /// runs after a reload (the other keys keep their values until a restart).
    pub fn with_live_from(&self, new: &Config) -> Config {
        let mut out = self.clone();
        out.log_level.clone_from(&new.log_level);
        out.transport.window = new.transport.window;
        out.transport.arl_timeout_secs = new.transport.arl_timeout_secs;
        out.transport.arl_max_resends = new.transport.arl_max_resends;
        out.lots.max_sheets = new.lots.max_sheets;
        out.lots.max_age_secs = new.lots.max_age_secs;
        out.lots.deadline_alarm_days = new.lots.deadline_alarm_days;
        out.lots.close_at.clone_from(&new.lots.close_at);
        out
    }

    /// Every key's value as text (keys left unset, such as `trust_dir`, are absent).
    pub(super) fn flat(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(toml::Value::Table(t)) = toml::Value::try_from(self) {
            let mut all = Vec::new();
            leaves(&t, "", &mut all);
            for (path, value) in all {
                let text = match value {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(path, text);
            }
        }
        out
    }

    /// The keys whose value differs in `new`, in [`KEYS`] order.
    pub fn changes(&self, new: &Config) -> Vec<Change> {
        let (old, new) = (self.flat(), new.flat());
        KEYS.iter()
            .filter(|k| old.get(k.path) != new.get(k.path))
            .map(|k| Change {
                key: k.path,
                live: k.live,
                // The broker URL may hold a password: never shown.
                shown: (!k.path.starts_with("transport.amqp_url")).then(|| {
                    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "unset".into());
                    (show(old.get(k.path)), show(new.get(k.path)))
                }),
            })
            .collect()
    }
}

/// One key changed by a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: &'static str,
    /// Applied at once (else it waits for a restart).
    pub live: bool,
    /// Old and new values, unless secret.
    pub shown: Option<(String, String)>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shown {
            Some((old, new)) => write!(f, "{} {old} -> {new}", self.key),
            None => write!(f, "{} (value hidden)", self.key),
        }
    }
}

/// The settings a SIGHUP may change while fsed runs (see [`Key::live`](super::Key::live); the
/// log level is applied by the logger itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSettings {
    /// `lots.max_sheets`.
    pub max_sheets: usize,
    /// `lots.max_age_secs`.
    pub max_age: Duration,
    /// `lots.deadline_alarm_days`.
    pub deadline_alarm_days: u32,
    /// `lots.close_at`.
    pub close_at: Option<chrono::NaiveTime>,
    /// `transport.window`.
    pub window: usize,
    /// `transport.arl_timeout_secs`.
    pub arl_timeout: Duration,
    /// `transport.arl_max_resends`.
    pub arl_max_resends: u32,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Config::default().live()
    }
}

/// The live settings, shared: the service sets them on SIGHUP, the batcher and the API read
/// them at each use.
#[derive(Debug, Clone, Default)]
pub struct Live(Arc<RwLock<LiveSettings>>);

impl Live {
    /// Shares `settings`.
    pub fn new(settings: LiveSettings) -> Live {
        Live(Arc::new(RwLock::new(settings)))
    }

    /// The settings now.
    pub fn get(&self) -> LiveSettings {
        // A poisoned lock only means a writer panicked between two plain stores of a Copy
        // value: the value is whole either way.
        *self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the settings.
    pub fn set(&self, settings: LiveSettings) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_their_keys_and_hide_the_broker_url() {
        let old = Config::default();
        let mut new = old.clone();
        new.lots.max_sheets = 5;
        new.transport.amqp_url = "amqp://user:secret@host".into();
        new.transport.amqp_urls = vec!["amqp://user:secret@other".into()];
        new.state_dir = "/elsewhere".into();
        let changes = old.changes(&new);
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                format!("state_dir {} -> /elsewhere", old.state_dir.display()),
                "transport.amqp_url (value hidden)".to_string(),
                "transport.amqp_urls (value hidden)".to_string(),
                "lots.max_sheets 100 -> 5".to_string(),
            ]
        );
        assert_eq!(
            changes.iter().map(|c| c.live).collect::<Vec<_>>(),
            [false, false, false, true]
        );
        assert!(old.changes(&old.clone()).is_empty());
        // After a reload only the keys that need a restart still differ.
        let after = old.with_live_from(&new);
        assert!(after.changes(&new).iter().all(|c| !c.live));
        assert_eq!(after.changes(&new).len(), 3);
        let mut all_live = Config {
            log_level: "debug".into(),
            ..Config::default()
        };
        all_live.transport.window = 3;
        all_live.transport.arl_timeout_secs = 60;
        all_live.transport.arl_max_resends = 2;
        all_live.lots.max_age_secs = 9;
        all_live.lots.deadline_alarm_days = 4;
        all_live.lots.close_at = Some("12:00".into());
        let live_keys: Vec<&str> = KEYS.iter().filter(|k| k.live).map(|k| k.path).collect();
        let changed: Vec<&str> = old.changes(&all_live).iter().map(|c| c.key).collect();
        assert_eq!(
            changed,
            live_keys
                .iter()
                .filter(|k| **k != "lots.max_sheets")
                .copied()
                .collect::<Vec<_>>()
        );
        assert!(old.with_live_from(&all_live).changes(&all_live).is_empty());
        assert_eq!(new.live().max_sheets, 5);
    }
}
