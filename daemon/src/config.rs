//! Settings: a TOML file (`/etc/fsed/fsed.toml` by default), then
//! environment (`FSED_AMQP_URL`), then command-line flags. Unknown keys and
//! bad values are refused at start with the key named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Which card readers fsed uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardBackend {
    /// pcscd's readers.
    Pcsc,
    /// The embedded virtual reader for simulated cards.
    Virtual,
}

/// Which transport carries lots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// A spool directory (outbox / inbox).
    Spool,
    /// RabbitMQ over AMQP 0-9-1.
    Amqp,
}

/// `[cards]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardsSection {
    /// `pcsc` or `virtual`.
    pub backend: CardBackend,
    /// Listening addresses of the virtual reader's slots.
    pub virtual_slots: Vec<SocketAddr>,
}

impl Default for CardsSection {
    fn default() -> Self {
        CardsSection {
            backend: CardBackend::Pcsc,
            virtual_slots: vec![
                SocketAddr::from(([127, 0, 0, 1], fse_formats::vpcd::VPCD_PORT)),
                SocketAddr::from(([127, 0, 0, 1], fse_formats::vpcd::VPCD_PORT + 1)),
            ],
        }
    }
}

/// `[transport]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSection {
    /// `spool` or `amqp`.
    pub kind: TransportKind,
    /// Spool outbox (lots written here); relative paths are under the state directory.
    pub spool_outbox: PathBuf,
    /// Spool inbox (ARLs read from here).
    pub spool_inbox: PathBuf,
    /// AMQP URL; may hold credentials, so it is never logged. `FSED_AMQP_URL` overrides it.
    pub amqp_url: String,
    /// fsed's return queue.
    pub return_queue: String,
    /// Lots in flight at most: published together before their confirms are awaited (1 to 1024).
    pub window: usize,
    /// Longest wait, in seconds, for the broker: a connection, or a window's confirms.
    /// An expired wait means "unknown": the lots are sent again (the insurer dedups by id).
    pub publish_timeout_secs: u64,
}

impl std::fmt::Debug for TransportSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportSection")
            .field("kind", &self.kind)
            .field("spool_outbox", &self.spool_outbox)
            .field("spool_inbox", &self.spool_inbox)
            .field("amqp_url", &"<hidden>")
            .field("return_queue", &self.return_queue)
            .field("window", &self.window)
            .field("publish_timeout_secs", &self.publish_timeout_secs)
            .finish()
    }
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            kind: TransportKind::Spool,
            spool_outbox: PathBuf::from("spool/outbox"),
            spool_inbox: PathBuf::from("spool/inbox"),
            amqp_url: "amqp://127.0.0.1:5672/%2f".into(),
            return_queue: fse_formats::wire::DEFAULT_RETURN_QUEUE.into(),
            window: crate::transport::DEFAULT_WINDOW,
            publish_timeout_secs: 10,
        }
    }
}

/// `[lots]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LotsSection {
    /// A lot closes when it holds this many sheets.
    pub max_sheets: usize,
    /// A lot closes when its oldest sheet is this old (seconds).
    pub max_age_secs: u64,
    /// A sheet whose sending deadline is this many working days away (or fewer, or past)
    /// raises an alarm (`sheet.deadline` event, `queue.alarms`) and its lot closes at once.
    pub deadline_alarm_days: u32,
    /// Local time of day (`HH:MM`) at which every open lot closes, e.g. the end of the day.
    pub close_at: Option<String>,
}

impl LotsSection {
    /// `close_at` as a time of day.
    pub fn close_time(&self) -> Option<chrono::NaiveTime> {
        self.close_at
            .as_deref()
            .and_then(|t| chrono::NaiveTime::parse_from_str(t, "%H:%M").ok())
    }
}

impl Default for LotsSection {
    fn default() -> Self {
        LotsSection {
            max_sheets: 100,
            max_age_secs: 300,
            deadline_alarm_days: 1,
            close_at: None,
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Days an acknowledged lot stays in the queue before it is archived and purged (≥ 90).
    pub days: u32,
    /// Where archived lots go (relative to the state directory).
    pub archive_dir: PathBuf,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            days: 400,
            archive_dir: PathBuf::from("archive"),
        }
    }
}

/// `[api]`: the local API's limits and who may connect. Users and groups are names (looked up
/// in `/etc/passwd` and `/etc/group`) or numeric ids. A connection is served when its process
/// runs as an allowed user, or with an allowed group as its primary or a supplementary group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Most connections served at once; one more gets a `TOO_MANY_CONNECTIONS` error line and
    /// is closed (1 to 65536).
    pub max_connections: usize,
    /// Replies and events queued for a client that does not read them (1 to 65536); while the
    /// queue is full, fsed reads no further request from that connection.
    pub max_queued_replies: usize,
    /// Users allowed to connect. Unset: root and the user fsed runs as.
    pub allowed_users: Option<Vec<String>>,
    /// Groups allowed to connect. Unset: `fsed`, when that group exists.
    pub allowed_groups: Option<Vec<String>>,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            max_connections: 256,
            max_queued_replies: 256,
            allowed_users: None,
            allowed_groups: None,
        }
    }
}

impl ApiSection {
    /// Checks the limits, and that every user and group named exists.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("api.max_connections", self.max_connections),
            ("api.max_queued_replies", self.max_queued_replies),
        ] {
            if !(1..=65536).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "1 to 65536".into(),
                });
            }
        }
        let accounts = crate::access::Accounts::read_system();
        for (key, names, kind) in [
            ("api.allowed_users", &self.allowed_users, "user"),
            ("api.allowed_groups", &self.allowed_groups, "group"),
        ] {
            for name in names.iter().flatten() {
                let found = if kind == "user" {
                    accounts.uid(name)
                } else {
                    accounts.gid(name)
                };
                if found.is_none() {
                    return Err(ConfigError::Invalid {
                        key,
                        reason: format!("no {kind} {name:?} (a name or a numeric id)"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the database and the spool (systemd's `StateDirectory`).
    pub state_dir: PathBuf,
    /// Unix socket of the API.
    pub socket: PathBuf,
    /// SQLite database file; relative paths are under `state_dir`.
    pub database: PathBuf,
    /// Trust directory: `root.pem` (trusted roots, required), `ca.pem` (intermediate CAs) and
    /// `crl.pem` (revocation lists: revoked CPS, Vitale cards in opposition). Without one, card
    /// certificates are not checked (a warning says so at start-up).
    pub trust_dir: Option<PathBuf>,
    /// Card readers.
    pub cards: CardsSection,
    /// Transport.
    pub transport: TransportSection,
    /// Lot closing.
    pub lots: LotsSection,
    /// Retention and archive.
    #[serde(default)]
    pub retention: RetentionSection,
    /// The local API: limits and who may connect.
    pub api: ApiSection,
}

impl Default for Config {
    fn default() -> Self {
        let state_dir = std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/fsed"));
        let runtime = std::env::var_os("RUNTIME_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/fsed"));
        Config {
            state_dir,
            socket: runtime.join("fsed.sock"),
            database: PathBuf::from("fsed.db"),
            trust_dir: None,
            cards: CardsSection::default(),
            transport: TransportSection::default(),
            lots: LotsSection::default(),
            retention: RetentionSection::default(),
            api: ApiSection::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file does not parse or has a bad key (the message names it).
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong, with the key.
        message: String,
    },
    /// A value is out of range.
    #[error("{key}: {reason}")]
    Invalid {
        /// Key at fault.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Reads a TOML file (absent file: defaults, when `required` is false).
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let mut cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        if let Ok(url) = std::env::var("FSED_AMQP_URL") {
            cfg.transport.amqp_url = url;
        }
        Ok(cfg)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.api.validate()?;
        if self.lots.max_sheets == 0 || self.lots.max_sheets > 100_000 {
            return Err(ConfigError::Invalid {
                key: "lots.max_sheets",
                reason: "must be between 1 and 100000".into(),
            });
        }
        if self.lots.close_at.is_some() && self.lots.close_time().is_none() {
            return Err(ConfigError::Invalid {
                key: "lots.close_at",
                reason: "a local time of day as HH:MM".into(),
            });
        }
        if self.retention.days < crate::retention::MIN_DAYS {
            return Err(ConfigError::Invalid {
                key: "retention.days",
                reason: format!("at least {} days", crate::retention::MIN_DAYS),
            });
        }
        if self.cards.backend == CardBackend::Virtual && self.cards.virtual_slots.is_empty() {
            return Err(ConfigError::Invalid {
                key: "cards.virtual_slots",
                reason: "at least one slot is needed".into(),
            });
        }
        if !(1..=1024).contains(&self.transport.window) {
            return Err(ConfigError::Invalid {
                key: "transport.window",
                reason: "1 to 1024 lots".into(),
            });
        }
        if !(1..=600).contains(&self.transport.publish_timeout_secs) {
            return Err(ConfigError::Invalid {
                key: "transport.publish_timeout_secs",
                reason: "1 to 600 seconds".into(),
            });
        }
        if self.transport.kind == TransportKind::Amqp
            && !self.transport.amqp_url.starts_with("amqp")
        {
            return Err(ConfigError::Invalid {
                key: "transport.amqp_url",
                reason: "must start with amqp:// or amqps://".into(),
            });
        }
        Ok(())
    }

    /// A path relative to the state directory.
    pub fn state_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.state_dir.join(p)
        }
    }

    /// Lot maximum age.
    pub fn lot_max_age(&self) -> Duration {
        Duration::from_secs(self.lots.max_age_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fsed.toml");
        std::fs::write(&p, "[lots]\nmax_sheet = 3\n").unwrap();
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("max_sheet"), "{err}");
    }

    #[test]
    fn values_are_checked() {
        let mut cfg = Config::default();
        cfg.lots.max_sheets = 0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("lots.max_sheets"));
        let mut cfg = Config::default();
        cfg.lots.close_at = Some("25:00".into());
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("lots.close_at"));
        cfg.lots.close_at = Some("18:30".into());
        assert!(cfg.validate().is_ok());
        cfg.retention.days = 30;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("retention.days"));
        let mut cfg = Config::default();
        cfg.transport.window = 0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("transport.window"));
        cfg.transport.window = 64;
        cfg.transport.publish_timeout_secs = 0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("transport.publish_timeout_secs"));
        let p = std::path::Path::new("/nonexistent/fsed.toml");
        assert!(Config::load(p, false).is_ok());
        assert!(Config::load(p, true).is_err());
    }
}
