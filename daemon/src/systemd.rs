//! The service manager's side of fsed: state notifications over
//! `$NOTIFY_SOCKET` (`READY=1`, `STATUS=`, `RELOADING=1`, `STOPPING=1`,
//! `WATCHDOG=1`; a path or an abstract `@name`), the watchdog interval
//! (`$WATCHDOG_USEC`), and the API socket handed over by socket activation
//! (`$LISTEN_PID`, `$LISTEN_FDS`, descriptor 3). Outside systemd every
//! notification is a no-op and fsed binds its socket itself.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;
use std::time::Duration;

/// Sends state changes to the service manager (nothing when `$NOTIFY_SOCKET` is unset).
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<std::ffi::OsString>,
}

impl Notifier {
    /// The notifier of this process, from `$NOTIFY_SOCKET`.
    pub fn from_env() -> Notifier {
        Notifier {
            socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (`KEY=value` lines). A failure is logged, never fatal: the service keeps
    /// running whether or not its manager hears it.
    pub fn send(&self, state: &str) {
        let Some(addr) = &self.socket else { return };
        if let Err(e) = send_to(addr, state.as_bytes()) {
            tracing::warn!(error = %e, notify_socket = %Path::new(addr).display(), "service manager notification failed");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A status line (`systemctl status` shows it).
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `RELOADING=1` with a status line; [`Notifier::ready`] ends the reload.
    pub fn reloading(&self, status: &str) {
        self.send(&format!("RELOADING=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// A watchdog keep-alive: send only while the service is healthy.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// A status must stay on one line (a newline would start another assignment).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Sends one datagram to a notification socket: a path, or an abstract name written `@name`.
fn send_to(addr: &OsStr, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match addr.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let abstract_addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.connect_addr(&abstract_addr)?;
        }
        None => socket.connect(Path::new(addr))?,
    }
    let sent = socket.send(message)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification cut short",
        ))
    }
}

/// The watchdog's timeout when the service manager set one for this process
/// (`$WATCHDOG_USEC`, and `$WATCHDOG_PID` if present naming this process).
pub fn watchdog_timeout() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC")
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Why a socket handed over by the service manager cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("socket activation: {0}")]
pub struct ActivationError(String);

/// The listening socket the service manager passed (socket activation), if it passed one to
/// this process: `$LISTEN_PID` must be this process and `$LISTEN_FDS` at least 1; descriptor 3
/// must then be a listening Unix stream socket. The variables are cleared so that nothing
/// started later takes them for its own. `Ok(None)`: bind the configured path instead.
///
/// Call it before any other thread starts: it changes the environment.
pub fn activated_listener() -> Result<Option<UnixListener>, ActivationError> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok();
    if !ours || count.is_none() {
        return Ok(None);
    }
    let count = count
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .parse::<usize>()
        .map_err(|_| ActivationError(format!("LISTEN_FDS={count:?} is not a number")))?;
    // Takes LISTEN_PID and LISTEN_FDS out of the environment.
    let mut fds = listenfd::ListenFd::from_env();
    std::env::remove_var("LISTEN_FDNAMES");
    if count == 0 {
        return Ok(None);
    }
    if count > 1 {
        tracing::warn!(
            count,
            "the service manager passed more than one socket; only the first is used"
        );
    }
    let listener = fds
        .take_unix_listener(0)
        .map_err(|e| ActivationError(format!("descriptor 3: {e}")))?
        .ok_or_else(|| ActivationError("descriptor 3 was not passed".into()))?;
    match socket2::SockRef::from(&listener).is_listener() {
        Ok(true) => {}
        Ok(false) => {
            return Err(ActivationError(
                "descriptor 3 is a Unix stream socket that does not listen".into(),
            ))
        }
        Err(e) => return Err(ActivationError(format!("descriptor 3: {e}"))),
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| ActivationError(format!("descriptor 3: {e}")))?;
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), b"READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("fsed-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), b"STOPPING=1").unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        assert!(send_to(dir.path().join("absent").as_os_str(), b"X=1").is_err());
    }

    #[test]
    fn a_status_stays_on_one_line() {
        assert_eq!(one_line("a\nb\rc"), "a b c");
    }
}
