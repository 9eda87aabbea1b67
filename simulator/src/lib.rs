//! `fse_simulator`: simulated CPS and Vitale cards (ISO 7816-4) with their
//! vpcd link, the insurer simulator (AMQP and spool), the load generator
//! that drives fsed like many practices (`practice`), and the demo that runs
//! fsed on its embedded defaults, and programs sharing one card (`card_load`). Binary:
//! `fse-sim`.

pub mod app;
pub mod card;
pub mod card_load;
pub mod cards_cmd;
pub mod control;
pub mod demo;
pub mod insurer;
pub mod pki;
pub mod practice;
pub mod profile_keys;
pub mod profiles;
pub mod replay;
pub mod scenarios;
mod trust_dir;
pub mod vpcd;

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Waits until `socket` has something to read (or is closed).
///
/// A thread blocked in `read` on a Unix socket is woken whenever its peer takes what it
/// wrote (the kernel signals room to write on the same wait queue), and goes back to sleep:
/// a wake-up for nothing per request. `poll` for `POLLIN` alone is woken by data only. The
/// socket's read timeout holds as it does for `read`.
pub fn wait_readable(socket: &std::os::unix::net::UnixStream) -> std::io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = socket.read_timeout()?.map(|d| Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    let mut fds = [PollFd::new(socket, PollFlags::IN)];
    loop {
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Err(std::io::ErrorKind::WouldBlock.into()),
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
