//! Settings: owns the configuration's keys, where each value comes from and
//! what may change while fsed runs. A value comes from the first of: a
//! command-line flag, an environment variable (`FSED_` and the key in capitals,
//! dots as underscores: `FSED_LOTS_MAX_SHEETS`), the TOML file
//! (`/etc/fsed/fsed.toml` by default), the default. Every unknown key, bad
//! value and impossible setting is reported at once, each with its key
//! ([`Sources::load`]). On SIGHUP the service reads the same sources again and
//! applies the keys marked live ([`Key::live`], through [`Live`]); the others
//! wait for a restart. `daemon/CONFIG.md` documents every key.
//!
//! The parts: `sections` (the typed sections, their defaults and limits), `keys` (the
//! catalogue of keys and their environment variables), `sources` (reading and merging the
//! file, environment and flags; the errors), `validate` (values that parse but cannot work)
//! and `reload` (what a SIGHUP may change). Every item is reachable as `config::X`.

mod keys;
mod network;
mod reload;
mod sections;
mod sources;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use keys::{env_var, find_key, Key, Kind, ENV_ALIASES, KEYS};
pub use network::{
    workstation_name_problem, NetworkSection, WorkstationRights, DEFAULT_CERTIFICATE_DAYS,
};
pub use reload::{Change, Live, LiveSettings};
pub use sections::{
    ApiSection, AttachmentsSection, CardBackend, CardsSection, LotsSection, RetentionSection,
    TransportKind, TransportSection, DEFAULT_ARL_MAX_RESENDS, DEFAULT_ARL_TIMEOUT_SECS,
    DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_CONNECTIONS_PER_UID, MAX_ALARM_DAYS, MAX_ARL_RESENDS,
    MAX_ARL_TIMEOUT_SECS, MAX_IDLE_TIMEOUT_SECS, MAX_LOT_AGE_SECS, MAX_LOT_SHEETS, MAX_SOCKET_PATH,
    SPOOL_RETURN_BYTES,
};
pub use sources::{ConfigError, ConfigErrors, Sources};

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
    /// Supporting documents.
    pub attachments: AttachmentsSection,
    /// The local API: limits and who may connect.
    pub api: ApiSection,
    /// The network API (mutual TLS), enrollment and workstation rights.
    pub network: NetworkSection,
    /// The other fseds whose cards this one may use.
    pub remote: crate::remote::config::RemoteSection,
    /// The paper duplicates of care sheets.
    pub paper: crate::paper::PaperSection,
    /// The Vitale app: its challenges and tokens.
    pub app: crate::presence::config::AppSection,
    /// Rights online (ADRi).
    pub rights: crate::rights::config::RightsSection,
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
            attachments: AttachmentsSection::default(),
            api: ApiSection::default(),
            network: NetworkSection::default(),
            remote: Default::default(),
            paper: Default::default(),
            app: Default::default(),
            rights: Default::default(),
        }
    }
}

impl Config {
    /// A path relative to the state directory.
    pub fn state_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.state_dir.join(p)
        }
    }

    /// The folder of the paper duplicates (`[paper] dir`, else `paper` beside the database).
    pub fn paper_dir(&self) -> PathBuf {
        self.paper.dir(&self.state_dir, &self.database)
    }

    /// Lot maximum age.
    pub fn lot_max_age(&self) -> Duration {
        Duration::from_secs(self.lots.max_age_secs)
    }
}
