//! Settings: owns the configuration's keys, where each value comes from and
//! what may change while fsed runs. A value comes from the first of: a
//! command-line flag, an environment variable (`FSED_` and the key in capitals,
//! dots as underscores: `FSED_LOTS_MAX_SHEETS`), the TOML file
//! (`/etc/fsed/fsed.toml` by default), the default. Every unknown key, bad
//! value and impossible setting is reported at once, each with its key
//! ([`Sources::load`]). On SIGHUP the service reads the same sources again and
//! applies the keys marked live ([`Key::live`], through [`Live`]); the others
//! wait for a restart. `daemon/CONFIG.md` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fse_formats::vpcd::Endpoint;
use serde::{Deserialize, Serialize};

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
            .field("return_queue", &self.return_queue)
            .field("window", &self.window)
            .field("publish_timeout_secs", &self.publish_timeout_secs)
            .field("spool_max_return_bytes", &self.spool_max_return_bytes)
            .field("arl_timeout_secs", &self.arl_timeout_secs)
            .field("arl_max_resends", &self.arl_max_resends)
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

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the database and the spool (systemd's `StateDirectory`).
    pub state_dir: PathBuf,
    /// Unix socket of the API (unused when systemd passes the socket: socket activation).
    pub socket: PathBuf,
    /// SQLite database file; relative paths are under `state_dir`.
    pub database: PathBuf,
    /// Trust directory: `root.pem` (trusted roots, required), `ca.pem` (intermediate CAs) and
    /// `crl.pem` (revocation lists: revoked CPS, Vitale cards in opposition). The insurers' CA is
    /// among the CAs: it certifies the keys that sign ARLs and payment returns. Without a trust
    /// directory, card certificates are not checked and every return is refused (a warning
    /// says so at start-up).
    pub trust_dir: Option<PathBuf>,
    /// What is logged: a level (`error`, `warn`, `info`, `debug`, `trace`) or per-module
    /// directives (`info,fsed::batcher=debug`).
    pub log_level: String,
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
            log_level: "info".into(),
            cards: CardsSection::default(),
            transport: TransportSection::default(),
            lots: LotsSection::default(),
            retention: RetentionSection::default(),
            api: ApiSection::default(),
        }
    }
}

/// One problem with the configuration.
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
    /// The file is not TOML (the message has the line and column).
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong, where.
        message: String,
    },
    /// A key that does not exist, or a value of the wrong type.
    #[error("{key}: {reason} (from {origin})")]
    Key {
        /// Key at fault, as a dotted path (`lots.max_sheets`).
        key: String,
        /// Where the value came from: the file, an environment variable or a flag.
        origin: String,
        /// Why.
        reason: String,
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

impl ConfigError {
    /// The key at fault, when the problem is one key's.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Parse { .. } => None,
        }
    }
}

/// Every problem found in a configuration (never empty), one a line when shown.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// How a key's value is written in an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text or a path, as is.
    Text,
    /// A whole number.
    Number,
    /// A list, comma-separated (`127.0.0.1:35963,127.0.0.1:35964`).
    List,
}

/// A key of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted path (`lots.max_sheets`): the TOML key under its section.
    pub path: &'static str,
    /// How its environment variable is read.
    pub kind: Kind,
    /// Whether a SIGHUP applies a new value to the running service (else it needs a restart).
    pub live: bool,
}

/// Every key, in the order of `daemon/CONFIG.md`.
pub const KEYS: &[Key] = &[
    key("state_dir", Kind::Text, false),
    key("socket", Kind::Text, false),
    key("database", Kind::Text, false),
    key("trust_dir", Kind::Text, false),
    key("log_level", Kind::Text, true),
    key("cards.backend", Kind::Text, false),
    key("cards.virtual_slots", Kind::List, false),
    key("transport.kind", Kind::Text, false),
    key("transport.spool_outbox", Kind::Text, false),
    key("transport.spool_inbox", Kind::Text, false),
    key("transport.amqp_url", Kind::Text, false),
    key("transport.return_queue", Kind::Text, false),
    key("transport.window", Kind::Number, true),
    key("transport.publish_timeout_secs", Kind::Number, false),
    key("transport.spool_max_return_bytes", Kind::Number, false),
    key("transport.arl_timeout_secs", Kind::Number, true),
    key("transport.arl_max_resends", Kind::Number, true),
    key("lots.max_sheets", Kind::Number, true),
    key("lots.max_age_secs", Kind::Number, true),
    key("lots.deadline_alarm_days", Kind::Number, true),
    key("lots.close_at", Kind::Text, true),
    key("retention.days", Kind::Number, false),
    key("retention.archive_dir", Kind::Text, false),
    key("api.max_connections", Kind::Number, false),
    key("api.max_queued_replies", Kind::Number, false),
    key("api.max_connections_per_uid", Kind::Number, false),
    key("api.idle_timeout_secs", Kind::Number, false),
    key("api.allowed_users", Kind::List, false),
    key("api.allowed_groups", Kind::List, false),
];

const fn key(path: &'static str, kind: Kind, live: bool) -> Key {
    Key { path, kind, live }
}

/// Older environment variables still read, each with the key it sets; the key's own
/// variable wins when both are set.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("FSED_AMQP_URL", "transport.amqp_url"),
    ("FSED_LOG", "log_level"),
];

/// The environment variable of a key: `FSED_` and the key in capitals, dots as underscores.
pub fn env_var(path: &str) -> String {
    format!("FSED_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// The key of that dotted path, if there is one.
pub fn find_key(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// Where the configuration comes from: read once at start and again on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The TOML file.
    pub file: PathBuf,
    /// Whether a missing file is an error (it was named on the command line).
    pub required: bool,
    /// The environment variables (name, value); only the `FSED_` ones are read.
    pub env: Vec<(String, String)>,
    /// Values given as flags: (key, flag, value).
    pub flags: Vec<(&'static str, &'static str, toml::Value)>,
}

/// Where a value came from, for messages.
fn origin_of(origins: &BTreeMap<String, String>, path: &str) -> String {
    origins
        .get(path)
        .cloned()
        .unwrap_or_else(|| "the defaults".into())
}

/// Sets the leaf `path` (dotted) of `table`, making its sections as needed.
fn set_leaf(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_string(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_leaf(t, rest, value);
            }
        }
    }
}

/// Every leaf of `table` as (dotted path, value); arrays are leaves.
fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !t.is_empty() => leaves(t, &path, out),
            other => out.push((path, other.clone())),
        }
    }
}

/// An environment variable's text as the value of `key`.
fn env_value(key: &Key, text: &str) -> Result<toml::Value, String> {
    Ok(match key.kind {
        Kind::Text => toml::Value::String(text.to_string()),
        Kind::Number => toml::Value::Integer(
            text.trim()
                .parse::<i64>()
                .map_err(|_| format!("{text:?} is not a whole number"))?,
        ),
        Kind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
    })
}

impl Sources {
    /// The file at `file` (required when named on the command line) and this process's
    /// environment; no flags yet.
    pub fn new(file: PathBuf, required: bool) -> Sources {
        Sources {
            file,
            required,
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("FSED_"))
                .collect(),
            flags: Vec::new(),
        }
    }

    /// Adds a flag's value for `key` (it wins over the file and the environment).
    pub fn flag(&mut self, key: &'static str, flag: &'static str, value: toml::Value) {
        self.flags.push((key, flag, value));
    }

    /// Reads and merges every source, then checks the values: the configuration, or every
    /// problem found, each naming its key (and where its value came from).
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        let file = self.file.display().to_string();
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.required => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: self.file.clone(),
                    source,
                }
                .into())
            }
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: self.file.clone(),
                    message: e.to_string().trim_end().to_string(),
                })?;
        let mut origins = BTreeMap::new();
        let mut from_file = Vec::new();
        leaves(&table, "", &mut from_file);
        for (path, _) in from_file {
            origins.insert(path, file.clone());
        }
        let mut errors = Vec::new();
        let env: BTreeMap<&str, &str> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let by_env = ENV_ALIASES
            .iter()
            .map(|(var, path)| (var.to_string(), *path))
            .chain(KEYS.iter().map(|k| (env_var(k.path), k.path)));
        for (var, path) in by_env {
            let (Some(text), Some(key)) = (env.get(var.as_str()), find_key(path)) else {
                continue;
            };
            match env_value(key, text) {
                Ok(v) => {
                    set_leaf(&mut table, path, v);
                    origins.insert(path.to_string(), var.clone());
                }
                Err(reason) => errors.push(ConfigError::Key {
                    key: path.to_string(),
                    origin: var.clone(),
                    reason,
                }),
            }
        }
        for (path, flag, value) in &self.flags {
            set_leaf(&mut table, path, value.clone());
            origins.insert(path.to_string(), flag.to_string());
        }
        let cfg = match toml::Value::Table(table.clone()).try_into::<Config>() {
            Ok(cfg) => {
                errors.extend(cfg.problems());
                Some(cfg)
            }
            Err(whole) => {
                // Each value alone over the defaults: every bad key is named, not only the
                // first; the values that pass are then checked together.
                let mut all = Vec::new();
                leaves(&table, "", &mut all);
                let before = errors.len();
                let mut good = toml::Table::new();
                for (path, value) in all {
                    let mut one = toml::Table::new();
                    set_leaf(&mut one, &path, value.clone());
                    match toml::Value::Table(one).try_into::<Config>() {
                        Ok(_) => set_leaf(&mut good, &path, value),
                        Err(e) => errors.push(ConfigError::Key {
                            origin: origin_of(&origins, &path),
                            key: path,
                            reason: e.message().to_string(),
                        }),
                    }
                }
                match toml::Value::Table(good).try_into::<Config>() {
                    Ok(rest) => errors.extend(rest.problems()),
                    Err(_) if errors.len() > before => {}
                    Err(_) => errors.push(ConfigError::Parse {
                        path: self.file.clone(),
                        message: whole.message().to_string(),
                    }),
                }
                None
            }
        };
        match cfg {
            Some(cfg) if errors.is_empty() => Ok(cfg),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

impl Config {
    /// Reads a TOML file (absent file: defaults, when `required` is false), with this
    /// process's `FSED_` environment variables over it, and checks it.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigErrors> {
        Sources::new(path.to_path_buf(), required).load()
    }

    /// Checks values that parse but cannot work: every problem, each with its key.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Every value that parses but cannot work, each with its key.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        if let Err(e) = self.api.validate() {
            out.push(e);
        }
        let mut bad = |key: &'static str, reason: String| {
            out.push(ConfigError::Invalid { key, reason });
        };
        if self.state_dir.as_os_str().is_empty() {
            bad("state_dir", "must not be empty".into());
        }
        if self.database.as_os_str().is_empty() {
            bad("database", "must not be empty".into());
        }
        if self.socket.as_os_str().is_empty() {
            bad("socket", "must not be empty".into());
        } else if self.socket.as_os_str().len() > MAX_SOCKET_PATH {
            bad(
                "socket",
                format!("at most {MAX_SOCKET_PATH} bytes (a Unix socket path)"),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            bad(
                "log_level",
                format!("not a level or a list of directives: {e}"),
            );
        }
        if self.lots.max_sheets == 0 || self.lots.max_sheets > MAX_LOT_SHEETS {
            bad(
                "lots.max_sheets",
                format!("must be between 1 and {MAX_LOT_SHEETS}"),
            );
        }
        if !(1..=MAX_LOT_AGE_SECS).contains(&self.lots.max_age_secs) {
            bad(
                "lots.max_age_secs",
                format!("must be between 1 and {MAX_LOT_AGE_SECS} seconds (7 days)"),
            );
        }
        if self.lots.deadline_alarm_days > MAX_ALARM_DAYS {
            bad(
                "lots.deadline_alarm_days",
                format!("at most {MAX_ALARM_DAYS} working days"),
            );
        }
        if self.lots.close_at.is_some() && self.lots.close_time().is_none() {
            bad("lots.close_at", "a local time of day as HH:MM".into());
        }
        if self.retention.days < crate::retention::MIN_DAYS {
            bad(
                "retention.days",
                format!("at least {} days", crate::retention::MIN_DAYS),
            );
        }
        if self.cards.backend == CardBackend::Virtual && self.cards.virtual_slots.is_empty() {
            bad("cards.virtual_slots", "at least one slot is needed".into());
        }
        if !(1..=1024).contains(&self.transport.window) {
            bad("transport.window", "1 to 1024 lots".into());
        }
        if !(1..=600).contains(&self.transport.publish_timeout_secs) {
            bad("transport.publish_timeout_secs", "1 to 600 seconds".into());
        }
        if !SPOOL_RETURN_BYTES.contains(&self.transport.spool_max_return_bytes) {
            bad(
                "transport.spool_max_return_bytes",
                format!(
                    "{} to {} bytes",
                    SPOOL_RETURN_BYTES.start(),
                    SPOOL_RETURN_BYTES.end()
                ),
            );
        }
        if !(1..=MAX_ARL_TIMEOUT_SECS).contains(&self.transport.arl_timeout_secs) {
            bad(
                "transport.arl_timeout_secs",
                format!("1 to {MAX_ARL_TIMEOUT_SECS} seconds"),
            );
        }
        if self.transport.arl_max_resends > MAX_ARL_RESENDS {
            bad(
                "transport.arl_max_resends",
                format!("0 to {MAX_ARL_RESENDS} resends"),
            );
        }
        if self.transport.return_queue.is_empty() || self.transport.return_queue.len() > 255 {
            bad("transport.return_queue", "1 to 255 bytes".into());
        }
        if self.transport.kind == TransportKind::Amqp {
            let url = &self.transport.amqp_url;
            if !url.starts_with("amqp") {
                bad(
                    "transport.amqp_url",
                    "must start with amqp:// or amqps://".into(),
                );
            } else if url.parse::<lapin::uri::AMQPUri>().is_err() {
                // The parser's own message quotes the URL, password included: not shown.
                bad(
                    "transport.amqp_url",
                    "not a broker URL (amqp[s]://user:password@host:port/vhost)".into(),
                );
            }
        }
        out
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

    /// This configuration with the live keys ([`Key::live`]) of `new`: what runs after a
    /// reload (the other keys keep their values until a restart).
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
    fn flat(&self) -> BTreeMap<String, String> {
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
                shown: (k.path != "transport.amqp_url").then(|| {
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

/// The settings a SIGHUP may change while fsed runs (see [`Key::live`]; the log level is
/// applied by the logger itself).
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
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fsed.toml");
        std::fs::write(&p, "[lots]\nmax_sheet = 3\n").unwrap();
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("max_sheet"), "{err}");
    }

    #[test]
    fn values_are_checked() {
        // The keys that bound fsed's inputs, each named when out of range.
        for (key, set) in [
            (
                "transport.spool_max_return_bytes",
                (|c: &mut Config| c.transport.spool_max_return_bytes = 4095) as fn(&mut Config),
            ),
            ("transport.spool_max_return_bytes", |c| {
                c.transport.spool_max_return_bytes = (1 << 30) + 1
            }),
            ("api.max_connections_per_uid", |c| {
                c.api.max_connections_per_uid = 0
            }),
            ("api.idle_timeout_secs", |c| c.api.idle_timeout_secs = 0),
            ("api.idle_timeout_secs", |c| {
                c.api.idle_timeout_secs = 86_401
            }),
        ] {
            let mut cfg = Config::default();
            set(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{key}: {err}");
        }
        let mut cfg = Config::default();
        cfg.transport.spool_max_return_bytes = 4096;
        cfg.api.idle_timeout_secs = 86_400;
        assert!(cfg.validate().is_ok());
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
        cfg.transport.publish_timeout_secs = 10;
        cfg.transport.arl_timeout_secs = 0;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("transport.arl_timeout_secs: 1 to 604800"),
            "{e}"
        );
        // 7 days (7 × 86400 = 604800 s) is the longest; one more second is refused.
        cfg.transport.arl_timeout_secs = 604_800;
        assert!(cfg.validate().is_ok());
        cfg.transport.arl_timeout_secs = 604_801;
        assert!(cfg.validate().is_err());
        cfg.transport.arl_timeout_secs = 14_400;
        cfg.transport.arl_max_resends = 101;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with("transport.arl_max_resends: 0 to 100"), "{e}");
        cfg.transport.arl_max_resends = 0;
        assert!(cfg.validate().is_ok(), "0: alarm only");
        let p = std::path::Path::new("/nonexistent/fsed.toml");
        assert!(Config::load(p, false).is_ok());
        assert!(Config::load(p, true).is_err());
    }

    fn sources(text: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fsed.toml");
        std::fs::write(&file, text).unwrap();
        let s = Sources {
            file,
            required: true,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: Vec::new(),
        };
        (dir, s)
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let (_d, s) = sources(
            "log_level = \"loud[\"\n[lots]\nmax_sheet = 3\nmax_age_secs = \"ten\"\n\
             [transport]\nwindow = 0\n[retention]\ndays = 10\n[nope]\nx = 1\n",
            &[("FSED_LOTS_DEADLINE_ALARM_DAYS", "soon")],
        );
        let errors = s.load().unwrap_err();
        let text = errors.to_string();
        for key in [
            "lots.max_sheet:",
            "lots.max_age_secs:",
            "nope.x:",
            "log_level:",
            "transport.window:",
            "retention.days:",
            "lots.deadline_alarm_days: \"soon\" is not a whole number (from FSED_LOTS_DEADLINE_ALARM_DAYS)",
        ] {
            assert!(text.lines().any(|l| l.starts_with(key)), "{key} in:\n{text}");
        }
        assert_eq!(text.lines().count(), 7, "{text}");
        let (_d, s) = sources(
            "log_level = \"loud[\"\n[transport]\nwindow = 0\n[retention]\ndays = 10\n",
            &[],
        );
        let text = s.load().unwrap_err().to_string();
        for key in ["log_level:", "transport.window:", "retention.days:"] {
            assert!(
                text.lines().any(|l| l.starts_with(key)),
                "{key} in:\n{text}"
            );
        }
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn a_broker_url_that_does_not_parse_is_named_without_its_password() {
        let (_d, s) = sources(
            "[transport]\nkind = \"amqp\"\namqp_url = \"amqp://u:secret@host:notaport/%2f\"\n",
            &[],
        );
        let text = s.load().unwrap_err().to_string();
        assert!(text.starts_with("transport.amqp_url:"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn flags_win_over_env_which_wins_over_the_file() {
        let (_d, mut s) = sources(
            "[lots]\nmax_sheets = 7\nmax_age_secs = 70\ndeadline_alarm_days = 3\n",
            &[
                ("FSED_LOTS_MAX_AGE_SECS", "80"),
                ("FSED_LOTS_MAX_SHEETS", "8"),
                ("FSED_AMQP_URL", "amqp://old"),
                ("FSED_TRANSPORT_AMQP_URL", "amqp://new"),
                ("FSED_CARDS_VIRTUAL_SLOTS", "127.0.0.1:1, 127.0.0.1:2"),
                ("FSED_LOG", "debug"),
            ],
        );
        s.flag(
            "lots.max_sheets",
            "--lot-max-sheets",
            toml::Value::Integer(9),
        );
        let cfg = s.load().unwrap();
        assert_eq!(cfg.lots.max_sheets, 9, "flag over env");
        assert_eq!(cfg.lots.max_age_secs, 80, "env over file");
        assert_eq!(cfg.lots.deadline_alarm_days, 3, "file over default");
        assert_eq!(cfg.lots.close_at, None, "default");
        assert_eq!(
            cfg.transport.amqp_url, "amqp://new",
            "the key's own variable wins"
        );
        assert_eq!(cfg.cards.virtual_slots.len(), 2);
        assert_eq!(cfg.log_level, "debug");
        s.flag(
            "lots.max_sheets",
            "--lot-max-sheets",
            toml::Value::Integer(0),
        );
        let text = s.load().unwrap_err().to_string();
        assert!(
            text.starts_with("lots.max_sheets: must be between 1 and"),
            "{text}"
        );
    }

    #[test]
    fn changes_name_their_keys_and_hide_the_broker_url() {
        let old = Config::default();
        let mut new = old.clone();
        new.lots.max_sheets = 5;
        new.transport.amqp_url = "amqp://user:secret@host".into();
        new.state_dir = "/elsewhere".into();
        let changes = old.changes(&new);
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                format!("state_dir {} -> /elsewhere", old.state_dir.display()),
                "transport.amqp_url (value hidden)".to_string(),
                "lots.max_sheets 100 -> 5".to_string(),
            ]
        );
        assert_eq!(
            changes.iter().map(|c| c.live).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert!(old.changes(&old.clone()).is_empty());
        // After a reload only the keys that need a restart still differ.
        let after = old.with_live_from(&new);
        assert!(after.changes(&new).iter().all(|c| !c.live));
        assert_eq!(after.changes(&new).len(), 2);
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

    #[test]
    fn every_key_is_real_and_documented() {
        let doc = include_str!("../CONFIG.md");
        let mut cfg = Config {
            trust_dir: Some("/t".into()),
            ..Config::default()
        };
        cfg.lots.close_at = Some("18:00".into());
        cfg.api.allowed_users = Some(vec!["root".into()]);
        cfg.api.allowed_groups = Some(vec!["root".into()]);
        let flat = cfg.flat();
        let keys: Vec<&str> = KEYS.iter().map(|k| k.path).collect();
        assert_eq!(
            flat.keys().map(String::as_str).collect::<Vec<_>>().len(),
            keys.len()
        );
        for k in flat.keys() {
            assert!(keys.contains(&k.as_str()), "{k} missing from KEYS");
        }
        for k in KEYS {
            assert!(
                doc.contains(&format!("`{}`", k.path)),
                "{} not in CONFIG.md",
                k.path
            );
            assert!(
                doc.contains(&format!("`{}`", env_var(k.path))),
                "{} not in CONFIG.md",
                env_var(k.path)
            );
        }
    }
}
