//! The network API: fsed's JSON-RPC over mutual TLS 1.3 for the practice's workstations
//! (`daemon/API.md`, "Network API"). Off unless `network.listen` is set.
//!
//! The parts: `ca` (the practice CA, fsed's server certificate, workstation certificates
//! issued from a CSR), `store` (the enrolled workstations, `workstations.json`), `rights`
//! (what a workstation may call and which CPS it may use), `server` (the TLS listener and the
//! client-certificate check), `enroll` (pairing codes and the enrollment listener). A
//! [`Network`] holds them for the service, the API handlers (`workstations.*`) and the doctor.

pub mod ca;
pub mod enroll;
pub mod rights;
pub mod server;
pub mod store;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::{Config, NetworkSection, WorkstationRights};
use crate::shutdown::{Shutdown, Trigger};

/// Why the network part could not do something; each names the file or the reason.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A file of the network directory could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file of the network directory holds what it should not.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate could not be made.
    #[error("certificate: {0}")]
    Certificate(String),
    /// rustls refused a configuration.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A listener could not be bound.
    #[error("{address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl From<rcgen::Error> for NetError {
    fn from(e: rcgen::Error) -> NetError {
        NetError::Certificate(e.to_string())
    }
}

/// The network API's state, shared by the listener, the enrollment listener, the
/// `workstations.*` handlers, the rights check and the doctor.
pub struct Network {
    /// `[network]` as configured at start.
    pub settings: NetworkSection,
    /// The CA and workstation directory (`network.dir` under the state directory).
    pub dir: PathBuf,
    /// The enrolled workstations.
    pub store: Arc<store::Store>,
    /// Pending pairing codes and the enrollment listener.
    pub enroll: enroll::Enrollment,
    /// The practice CA, once loaded or made.
    ca: Mutex<Option<Arc<ca::Ca>>>,
    /// The address the API listener is bound to, once bound.
    bound: Mutex<Option<SocketAddr>>,
    /// The current server certificate's end (Unix seconds), once made.
    server_not_after: Mutex<Option<i64>>,
    /// Open connections by workstation: their stop triggers, by connection number.
    live: Mutex<HashMap<String, Vec<(u64, Trigger)>>>,
    /// Stops the network's own tasks (the enrollment listener): fired by [`Network::stop`].
    stop: (Trigger, Shutdown),
}

/// Locks `m`, a poisoned lock being as good (every writer leaves it consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Network {
    /// The network part of `cfg`: its directory and the enrolled workstations read (nothing
    /// made yet).
    pub fn new(cfg: &Config) -> Result<Network, NetError> {
        let dir = cfg.state_path(&cfg.network.dir);
        let store = store::Store::open(&dir)?;
        Ok(Network {
            settings: cfg.network.clone(),
            dir,
            store: Arc::new(store),
            enroll: enroll::Enrollment::default(),
            ca: Mutex::new(None),
            bound: Mutex::new(None),
            server_not_after: Mutex::new(None),
            live: Mutex::new(HashMap::new()),
            stop: crate::shutdown::channel(),
        })
    }

    /// Stops the network's own tasks (the enrollment listener), at the service's stop.
    pub fn stop(&self) {
        self.stop.0.fire();
    }

    /// What the network's own tasks listen to for their stop.
    pub(crate) fn stopping(&self) -> Shutdown {
        self.stop.1.clone()
    }

    /// The practice CA: loaded from the directory, or made there the first time.
    pub fn ca(&self) -> Result<Arc<ca::Ca>, NetError> {
        let mut ca = lock(&self.ca);
        if let Some(ca) = ca.as_ref() {
            return Ok(Arc::clone(ca));
        }
        make_private_dir(&self.dir)?;
        let made = Arc::new(ca::Ca::load_or_create(&self.dir)?);
        *ca = Some(Arc::clone(&made));
        Ok(made)
    }

    /// The rights of workstation `name`: its `[network.workstations.<name>]` entry, if any.
    pub fn rights(&self, name: &str) -> Option<&WorkstationRights> {
        self.settings.workstations.get(name)
    }

    /// The address the API listener is bound to, once bound.
    pub fn bound(&self) -> Option<SocketAddr> {
        *lock(&self.bound)
    }

    pub(crate) fn set_bound(&self, a: SocketAddr) {
        *lock(&self.bound) = Some(a);
    }

    /// When the server certificate in use ends (Unix seconds), once made.
    pub fn server_not_after(&self) -> Option<i64> {
        *lock(&self.server_not_after)
    }

    pub(crate) fn set_server_not_after(&self, t: i64) {
        *lock(&self.server_not_after) = Some(t);
    }

    /// Counts an open connection of `name`, stopped by `trigger` on revocation.
    pub(crate) fn connected(&self, name: &str, id: u64, trigger: Trigger) {
        lock(&self.live)
            .entry(name.to_string())
            .or_default()
            .push((id, trigger));
    }

    /// Forgets connection `id` of `name`, closed.
    pub(crate) fn disconnected(&self, name: &str, id: u64) {
        let mut live = lock(&self.live);
        if let Some(v) = live.get_mut(name) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                live.remove(name);
            }
        }
    }

    /// Open connections of `name`.
    pub fn connections(&self, name: &str) -> usize {
        lock(&self.live).get(name).map_or(0, Vec::len)
    }

    /// Revokes workstation `name`: its certificates are refused at the next handshake, and its
    /// open connections close (after the request each is serving). The number of
    /// certificates revoked (0: none was in force).
    pub fn revoke(&self, name: &str) -> Result<usize, NetError> {
        let n = self.store.revoke(name, chrono::Utc::now().timestamp())?;
        let closing = lock(&self.live).remove(name).unwrap_or_default();
        for (_, trigger) in &closing {
            trigger.fire();
        }
        tracing::info!(
            workstation = name,
            certificates = n,
            connections = closing.len(),
            "workstation revoked"
        );
        Ok(n)
    }

    /// The idle timeout and queue of the local API, applied to network connections too.
    pub fn limits(cfg: &Config) -> server::Limits {
        server::Limits {
            max_connections: cfg.api.max_connections,
            per_workstation: cfg.api.max_connections_per_uid,
            queued: cfg.api.max_queued_replies,
            idle: Duration::from_secs(cfg.api.idle_timeout_secs),
        }
    }
}

/// Makes `dir` (and its parents) with mode 0700 when missing.
pub(crate) fn make_private_dir(dir: &Path) -> Result<(), NetError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| NetError::File {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, synced, renamed over it,
/// the directory synced) with `mode` whatever the umask.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), NetError> {
    let err = |source| NetError::File {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads `path`.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, NetError> {
    std::fs::read(path).map_err(|source| NetError::File {
        path: path.to_path_buf(),
        source,
    })
}

/// A Unix time as RFC 3339 UTC, seconds.
pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
