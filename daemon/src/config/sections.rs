//! The typed sections of the configuration (`[cards]`, `[transport]`, `[lots]`,
//! `[retention]`, `[api]`), each with its keys' documentation and defaults, and the limits
//! their values are held to.

use std::net::SocketAddr;
use std::path::PathBuf;

use fse_formats::vpcd::Endpoint;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Which card readers fsed uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CardBackend {
    /// pcscd's readers.
    Pcsc,
    /// The embedded virtual reader for simulated cards.
    Virtual,
}

/// Which transport carries lots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// A spool directory (outbox / inbox).
    Spool,
    /// RabbitMQ over AMQP 0-9-1.
    Amqp,
}

/// `[cards]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardsSection {
    /// `pcsc` or `virtual`.
    pub backend: CardBackend,
    /// Where the virtual reader's slots listen: `host:port` (as vpcd) or `unix:/path`.
    pub virtual_slots: Vec<Endpoint>,
    /// Longest expected wait, in ms, for a card job queued behind other clients (or a lease
    /// held by another client) before it is refused at once with `CARD_BUSY` (0 to 600000).
    pub max_wait_ms: u64,
    /// Longest lease of `cards.lock`, in seconds (1 to 3600).
    pub max_lease_secs: u64,
    /// Lots a CPS signs after its PIN at most; then the PIN is asked again (1 to 1000000).
    pub session_max_lots: u64,
    /// Hours a CPS signing session lasts at most after the PIN (1 to 720).
    pub session_max_hours: u64,
}

/// Largest `cards.max_wait_ms`: 10 minutes.
pub const MAX_CARD_WAIT_MS: u64 = 600_000;
/// Largest `cards.max_lease_secs`: an hour.
pub const MAX_LEASE_SECS: u64 = 3600;
/// Largest `cards.session_max_lots`.
pub const MAX_SESSION_LOTS: u64 = 1_000_000;
/// Largest `cards.session_max_hours`: 30 days.
pub const MAX_SESSION_HOURS: u64 = 720;

impl CardsSection {
    /// The `[cards]` bounds that cannot work, each with its key.
    pub fn bound_problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.max_wait_ms > MAX_CARD_WAIT_MS {
            out.push((
                "cards.max_wait_ms",
                format!("must be at most {MAX_CARD_WAIT_MS} ms"),
            ));
        }
        for (key, value, max, unit) in [
            (
                "cards.max_lease_secs",
                self.max_lease_secs,
                MAX_LEASE_SECS,
                "seconds",
            ),
            (
                "cards.session_max_lots",
                self.session_max_lots,
                MAX_SESSION_LOTS,
                "lots",
            ),
            (
                "cards.session_max_hours",
                self.session_max_hours,
                MAX_SESSION_HOURS,
                "hours",
            ),
        ] {
            if !(1..=max).contains(&value) {
                out.push((key, format!("must be between 1 and {max} {unit}")));
            }
        }
        out
    }

    /// The scheduler's and sessions' bounds.
    pub fn limits(&self) -> crate::cards::Limits {
        crate::cards::Limits::new(
            self.max_wait_ms,
            self.max_lease_secs,
            self.session_max_lots,
            self.session_max_hours,
        )
    }
}

impl Default for CardsSection {
    fn default() -> Self {
        CardsSection {
            backend: CardBackend::Pcsc,
            virtual_slots: vec![
                Endpoint::Tcp(SocketAddr::from((
                    [127, 0, 0, 1],
                    fse_formats::vpcd::VPCD_PORT,
                ))),
                Endpoint::Tcp(SocketAddr::from((
                    [127, 0, 0, 1],
                    fse_formats::vpcd::VPCD_PORT + 1,
                ))),
            ],
            max_wait_ms: 2000,
            max_lease_secs: 30,
            session_max_lots: 10_000,
            session_max_hours: 12,
        }
    }
}

/// `[transport]`.
#[derive(Clone, Deserialize, Serialize)]
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
    /// Several brokers of one cluster, tried in turn (the last that answered first); when
    /// set, `amqp_url` is not used. May hold credentials, so never logged.
    /// `FSED_TRANSPORT_AMQP_URLS` (comma-separated) overrides it.
    pub amqp_urls: Vec<String>,
    /// fsed's return queue.
    pub return_queue: String,
    /// Lots in flight at most: published together before their confirms are awaited (1 to 1024).
    pub window: usize,
    /// Longest wait, in seconds, for the broker: a connection, or a window's confirms.
    /// An expired wait means "unknown": the lots are sent again (the insurer dedups by id).
    pub publish_timeout_secs: u64,
    /// Largest spool return file read, in bytes (4096 to 1 GiB); a larger one, or any inbox
    /// entry that is not a regular file, is moved to the inbox's `.quarantine` folder unread.
    pub spool_max_return_bytes: u64,
    /// Seconds a lot stays sent without its ARL before it is sent again by itself (same bytes,
    /// same lot id: the insurer dedups by lot id and answers again), and between two resends.
    pub arl_timeout_secs: u64,
    /// Resends of a lot whose ARL does not come; past them fsed stops and its alarm stays up
    /// for a person (0: never resend, alarm only).
    pub arl_max_resends: u32,
}

impl std::fmt::Debug for TransportSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportSection")
            .field("kind", &self.kind)
            .field("spool_outbox", &self.spool_outbox)
            .field("spool_inbox", &self.spool_inbox)
            .field("amqp_url", &"<hidden>")
            .field("amqp_urls", &"<hidden>")
            .field("return_queue", &self.return_queue)
            .field("window", &self.window)
            .field("publish_timeout_secs", &self.publish_timeout_secs)
            .field("spool_max_return_bytes", &self.spool_max_return_bytes)
            .field("arl_timeout_secs", &self.arl_timeout_secs)
            .field("arl_max_resends", &self.arl_max_resends)
            .finish()
    }
}

impl TransportSection {
    /// The brokers to use, in order: `amqp_urls` when set, else `amqp_url` alone.
    pub fn broker_urls(&self) -> Vec<String> {
        if self.amqp_urls.is_empty() {
            vec![self.amqp_url.clone()]
        } else {
            self.amqp_urls.clone()
        }
    }
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            kind: TransportKind::Spool,
            spool_outbox: PathBuf::from("spool/outbox"),
            spool_inbox: PathBuf::from("spool/inbox"),
            amqp_url: "amqp://127.0.0.1:5672/%2f".into(),
            amqp_urls: Vec::new(),
            return_queue: fse_formats::wire::DEFAULT_RETURN_QUEUE.into(),
            window: crate::transport::DEFAULT_WINDOW,
            publish_timeout_secs: 10,
            spool_max_return_bytes: crate::transport::spool::DEFAULT_MAX_RETURN_BYTES,
            arl_timeout_secs: DEFAULT_ARL_TIMEOUT_SECS,
            arl_max_resends: DEFAULT_ARL_MAX_RESENDS,
        }
    }
}

/// `[lots]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// `[attachments]`: supporting documents (`fse.attach`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsSection {
    /// Largest document accepted, in bytes (1 to 5 MiB; default 5 MiB). An `fse.attach`
    /// request line may be up to 7,056,044 bytes (5 MiB in base64 and 64 KiB), other request
    /// lines 64 KiB.
    pub max_bytes: u64,
    /// Calendar days after its creation a degraded-mode sheet may go without its
    /// `degraded_paper` document before the alarm (0 to 365; default 3).
    pub degraded_paper_days: u32,
}

/// The default and largest `attachments.max_bytes`: 5 MiB.
pub const MAX_ATTACHMENT_BYTES: u64 = 5 * 1024 * 1024;

impl Default for AttachmentsSection {
    fn default() -> Self {
        AttachmentsSection {
            max_bytes: MAX_ATTACHMENT_BYTES,
            degraded_paper_days: 3,
        }
    }
}

/// The default of `api.max_connections_per_uid`: half the default `api.max_connections`, so
/// one program that leaks connections leaves the other half to the practice's other programs
/// (and the load generator's 64 practices under one user still fit).
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 128;
/// The default of `api.idle_timeout_secs`: 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
/// The largest `api.idle_timeout_secs`: a day.
pub const MAX_IDLE_TIMEOUT_SECS: u64 = 86_400;
/// The range of `transport.spool_max_return_bytes`: 4 KiB to 1 GiB.
pub const SPOOL_RETURN_BYTES: std::ops::RangeInclusive<u64> = 4096..=(1 << 30);

/// `[api]`: the local API's limits and who may connect. Users and groups are names (looked up
/// in `/etc/passwd` and `/etc/group`) or numeric ids. A connection is served when its process
/// runs as an allowed user, or with an allowed group as its primary or a supplementary group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Most connections served at once; one more gets a `TOO_MANY_CONNECTIONS` error line and
    /// is closed (1 to 65536).
    pub max_connections: usize,
    /// Event notifications queued for a client that does not read them (1 to 65536). A reply
    /// is written by its request, which waits until the client reads it.
    pub max_queued_replies: usize,
    /// Most connections served at once for the processes of one user (by `SO_PEERCRED` uid);
    /// one more gets a `TOO_MANY_CONNECTIONS_FOR_PEER` error line and is closed (1 to 65536).
    pub max_connections_per_uid: usize,
    /// Seconds a connection may stay idle (no request line, no event subscription) before it
    /// is closed with an `IDLE_TIMEOUT` error line (1 to 86400).
    pub idle_timeout_secs: u64,
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
            max_connections_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
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
            ("api.max_connections_per_uid", self.max_connections_per_uid),
        ] {
            if !(1..=65536).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "1 to 65536".into(),
                });
            }
        }
        if !(1..=MAX_IDLE_TIMEOUT_SECS).contains(&self.idle_timeout_secs) {
            return Err(ConfigError::Invalid {
                key: "api.idle_timeout_secs",
                reason: format!("1 to {MAX_IDLE_TIMEOUT_SECS} seconds"),
            });
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

impl crate::access::AllowedNames for ApiSection {
    fn allowed_users(&self) -> Option<&[String]> {
        self.allowed_users.as_deref()
    }

    fn allowed_groups(&self) -> Option<&[String]> {
        self.allowed_groups.as_deref()
    }
}

/// The longest Unix socket path (`sun_path` less its final NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// The most sheets a lot may hold.
pub const MAX_LOT_SHEETS: usize = 100_000;
/// The oldest a lot may grow before it closes, in seconds (7 days).
pub const MAX_LOT_AGE_SECS: u64 = 7 * 24 * 3600;
/// How long a lot stays sent without its ARL, by default, before it is sent again (4 hours: an
/// insurer answers within minutes; a lost answer is made up for the same day).
pub const DEFAULT_ARL_TIMEOUT_SECS: u64 = 4 * 3600;
/// The longest ARL timeout, in seconds (7 days).
pub const MAX_ARL_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// Resends of a lot without its ARL, by default, before a person must look.
pub const DEFAULT_ARL_MAX_RESENDS: u32 = 5;
/// The most resends that may be configured.
pub const MAX_ARL_RESENDS: u32 = 100;
/// The most working days ahead a deadline alarm may look.
pub const MAX_ALARM_DAYS: u32 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    fn section(users: Option<&[&str]>, groups: Option<&[&str]>) -> ApiSection {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        ApiSection {
            allowed_users: users.map(own),
            allowed_groups: groups.map(own),
            ..ApiSection::default()
        }
    }

    #[test]
    fn the_api_section_is_read_and_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fsed.toml");
        std::fs::write(
            &p,
            "[api]\nmax_connections = 8\nallowed_users = [\"root\", \"4242\"]\nallowed_groups = []\n",
        )
        .unwrap();
        let cfg = crate::config::Config::load(&p, true).unwrap();
        assert_eq!(cfg.api.max_connections, 8);
        assert_eq!(cfg.api.max_queued_replies, 256);
        assert_eq!(cfg.api.allowed_groups, Some(vec![]));
        assert!(cfg.validate().is_ok());
        std::fs::write(&p, "[api]\nmax_conections = 8\n").unwrap();
        let err = crate::config::Config::load(&p, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
        let refused = |api: ApiSection| {
            let cfg = crate::config::Config {
                api,
                ..crate::config::Config::default()
            };
            cfg.validate().unwrap_err().to_string()
        };
        let err = refused(ApiSection {
            max_connections: 0,
            ..ApiSection::default()
        });
        assert!(err.starts_with("api.max_connections"), "{err}");
        let err = refused(ApiSection {
            max_queued_replies: 100_000,
            ..ApiSection::default()
        });
        assert!(err.starts_with("api.max_queued_replies"), "{err}");
        let err = refused(section(Some(&["no-such-user-of-fsed"]), None));
        assert!(err.starts_with("api.allowed_users"), "{err}");
        assert!(err.contains("no-such-user-of-fsed"), "{err}");
        let err = refused(section(None, Some(&["no-such-group-of-fsed"])));
        assert!(err.starts_with("api.allowed_groups"), "{err}");
    }
}
