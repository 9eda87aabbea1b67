//! The card side of the vpcd protocol (`fse_formats::vpcd`): connects to a
//! reader — pcscd's vpcd driver, or fsed's embedded virtual reader — and
//! answers its control frames and APDUs with a virtual card. Reconnects
//! with backoff when the reader is absent or the link drops.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::vpcd::{self, CardLink, CardStep, Control};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::card::VirtualCard;

/// Time a simulated card takes to answer, like a real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Per APDU.
    pub apdu: Duration,
    /// Per signature (PSO: COMPUTE DIGITAL SIGNATURE, INTERNAL AUTHENTICATE), instead of `apdu`.
    pub signature: Duration,
    /// Per PIN presented (VERIFY with a PIN, CHANGE REFERENCE DATA, RESET RETRY COUNTER),
    /// instead of `apdu`: a test may pull the card out while it checks one.
    pub pin: Duration,
}

impl Latency {
    /// No delay: unit tests and benchmarks of fsed's own costs.
    pub const NONE: Latency = Latency {
        apdu: Duration::ZERO,
        signature: Duration::ZERO,
        pin: Duration::ZERO,
    };
    /// The order of a real card: 20 ms per APDU, 150 ms per signature.
    pub const REAL_CARD: Latency = Latency {
        apdu: Duration::from_millis(20),
        signature: Duration::from_millis(150),
        pin: Duration::from_millis(20),
    };

    /// The delay before answering `apdu`.
    pub fn for_apdu(&self, apdu: &[u8]) -> Duration {
        match apdu.get(1) {
            Some(&(fse_formats::apdu::INS_PSO | fse_formats::apdu::INS_INTERNAL_AUTHENTICATE)) => {
                self.signature
            }
            // VERIFY without data only asks for the tries left.
            Some(&fse_formats::apdu::INS_VERIFY) if apdu.len() > 5 => self.pin,
            Some(
                &(fse_formats::apdu::INS_CHANGE_REFERENCE_DATA
                | fse_formats::apdu::INS_RESET_RETRY_COUNTER),
            ) => self.pin,
            _ => self.apdu,
        }
    }
}

/// A card shared between its link and whoever scripts it.
pub type SharedCard = Arc<Mutex<Box<dyn VirtualCard>>>;

/// Shows `card` on the reader at `addr` (`host:port`, or `unix:/path` for fsed's embedded virtual
/// reader) until `stop` turns true.
///
/// The link itself is served by a blocking thread (a read, the card, a write per APDU:
/// fewer system calls and wake-ups than a task woken through the runtime's poller);
/// `stop` shuts the socket down under it.
pub async fn serve(
    addr: String,
    card: SharedCard,
    latency: Latency,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        match connect(&addr).await {
            Ok((stream, closer)) => {
                backoff = Duration::from_millis(100);
                tracing::info!(reader = %addr, "card connected to reader");
                let shared = Arc::clone(&card);
                // Dropped when the card leaves: a card pulled out in the middle of a slow
                // command never finishes it.
                let (pulled, pulled_rx) = std::sync::mpsc::channel::<()>();
                let mut link = tokio::task::spawn_blocking(move || {
                    session(stream, &shared, latency, &pulled_rx)
                });
                tokio::select! {
                    r = &mut link => {
                        if let Ok(Err(e)) = r {
                            tracing::info!(reader = %addr, error = %e, "reader link closed");
                        }
                    }
                    _ = stop.changed() => {
                        drop(pulled);
                        closer.close();
                        let _ = link.await;
                        return;
                    }
                }
                lock(&card).reset();
            }
            Err(e) => tracing::debug!(reader = %addr, error = %e, "reader not there yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A card's link to its reader, blocking: TCP (a vpcd driver) or a Unix socket (fsed's embedded
/// virtual reader on the same machine).
enum Link {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Link {
    /// Before each read. On TCP: acknowledge at once (a delayed ACK would hold the reader's
    /// next APDU behind it). On a Unix socket: wait in `poll` for data alone; a thread
    /// blocked in `read` is also woken each time the reader takes what this side wrote (the
    /// kernel signals room to write on the same wait queue), for nothing.
    fn before_read(&self) -> std::io::Result<()> {
        match self {
            Link::Tcp(s) => {
                let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
                Ok(())
            }
            Link::Unix(s) => crate::wait_readable(s),
        }
    }
}

impl Link {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Link::Tcp(s) => s.set_read_timeout(t),
            Link::Unix(s) => s.set_read_timeout(t),
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Tcp(s) => s.read(buf),
            Link::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Tcp(s) => s.write(buf),
            Link::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Closes a link from another thread, waking its blocked read.
struct Closer(Link);

impl Closer {
    fn close(self) {
        let _ = match &self.0 {
            Link::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Link::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

/// Connects to the reader at `addr` (`host:port` or `unix:/path`): the blocking link and a
/// handle that closes it.
async fn connect(addr: &str) -> std::io::Result<(Link, Closer)> {
    match addr.strip_prefix(fse_formats::vpcd::UNIX_PREFIX) {
        Some(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?.into_std()?;
            stream.set_nonblocking(false)?;
            let closer = stream.try_clone()?;
            Ok((Link::Unix(stream), Closer(Link::Unix(closer))))
        }
        None => {
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            let stream = stream.into_std()?;
            stream.set_nonblocking(false)?;
            let closer = stream.try_clone()?;
            Ok((Link::Tcp(stream), Closer(Link::Tcp(closer))))
        }
    }
}

fn lock(card: &SharedCard) -> std::sync::MutexGuard<'_, Box<dyn VirtualCard>> {
    // A poisoned card lock only means a panic elsewhere; the card state is still usable.
    card.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the next complete frame's payload out of `buf`, reading more from `stream` as
/// needed.
fn next_frame(stream: &mut Link, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(payload) = vpcd::take_frame(buf) {
            return Ok(payload);
        }
        // vpcd writes the length and the APDU separately; acknowledging at once spares the
        // sender's Nagle delay against our delayed ACK (about 40 ms per APDU otherwise).
        stream.before_read()?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the reader closed the link",
                ))
            }
            Ok(got) => buf.extend_from_slice(&chunk[..got]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Like [`next_frame`], but gives up after `within` without a whole frame (`None`); bytes
/// of a frame begun stay in `buf`.
fn next_frame_within(
    stream: &mut Link,
    buf: &mut Vec<u8>,
    within: Duration,
) -> std::io::Result<Option<Vec<u8>>> {
    stream.set_read_timeout(Some(within))?;
    let r = next_frame(stream, buf);
    stream.set_read_timeout(None)?;
    match r {
        Ok(payload) => Ok(Some(payload)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn session(
    mut stream: Link,
    card: &SharedCard,
    latency: Latency,
    pulled: &std::sync::mpsc::Receiver<()>,
) -> std::io::Result<()> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut buf = Vec::with_capacity(4096);
    // Tells 1-byte APDUs from control frames (`fse_formats::vpcd::CardLink`).
    let mut link = CardLink::new();
    let mut waiting = false;
    loop {
        let payload = if waiting {
            match next_frame_within(&mut stream, &mut buf, vpcd::CONTROL_SILENCE)? {
                Some(payload) => payload,
                None => {
                    // Nothing followed: it was a 1-byte APDU, and the reader waits for its answer.
                    waiting = false;
                    let sw = link.silence();
                    write_answer(&mut stream, &sw.to_be_bytes())?;
                    continue;
                }
            }
        } else {
            next_frame(&mut stream, &mut buf)?
        };
        let (confirmed, step) = link.frame(&payload);
        if let Some(Control::PowerOff | Control::Reset) = confirmed {
            lock(card).reset();
        }
        waiting = step == CardStep::Wait;
        let reply = match step {
            CardStep::Wait => None,
            CardStep::Atr => Some(lock(card).atr()),
            CardStep::Status(sw) => Some(sw.to_be_bytes().to_vec()),
            CardStep::Apdu(apdu) => {
                lock(card).received();
                let delay = latency.for_apdu(&apdu);
                let still_in = if delay.is_zero() {
                    matches!(pulled.try_recv(), Err(TryRecvError::Empty))
                } else {
                    matches!(pulled.recv_timeout(delay), Err(RecvTimeoutError::Timeout))
                };
                if !still_in {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the card was pulled out",
                    ));
                }
                Some(lock(card).process(&apdu))
            }
        };
        if let Some(bytes) = reply {
            write_answer(&mut stream, &bytes)?;
        }
    }
}

fn write_answer(stream: &mut Link, bytes: &[u8]) -> std::io::Result<()> {
    let frame = vpcd::encode(bytes).ok_or_else(|| std::io::Error::other("response over 64 KiB"))?;
    stream.write_all(&frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn frame(s: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
        s.write_all(&vpcd::encode(payload).unwrap()).await.unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn answers_a_reader_over_tcp_and_reconnects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let card: SharedCard = Arc::new(Mutex::new(Box::new(profiles::default_cps())));
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(serve(addr, card, Latency::NONE, stop));
        for _ in 0..2 {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(&vpcd::encode(&[Control::PowerOn.byte()]).unwrap())
                .await
                .unwrap();
            assert_eq!(
                frame(&mut s, &[Control::GetAtr.byte()]).await,
                crate::card::ATR_CPS
            );
            assert_eq!(frame(&mut s, &select_cps()).await, vec![0x90, 0x00]);
            drop(s);
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }

    /// SELECT of the CPS application by its AID.
    fn select_cps() -> Vec<u8> {
        let aid = fse_formats::cards::AID_CPS;
        let mut select = vec![0x00, 0xA4, 0x04, 0x0C, aid.len() as u8];
        select.extend_from_slice(aid);
        select
    }

    #[tokio::test]
    async fn one_byte_apdus_are_answered_6700_and_the_link_goes_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let card: SharedCard = Arc::new(Mutex::new(Box::new(profiles::default_cps())));
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(serve(addr, card, Latency::NONE, stop));
        let (mut s, _) = listener.accept().await.unwrap();
        // As pcscd's driver: power-on, then the ATR at once.
        s.write_all(&vpcd::encode(&[Control::PowerOn.byte()]).unwrap())
            .await
            .unwrap();
        assert_eq!(frame(&mut s, &[4]).await, crate::card::ATR_CPS);
        // A 1-byte APDU `04` is no request for the ATR now: wrong length.
        assert_eq!(frame(&mut s, &[4]).await, vec![0x67, 0x00]);
        // A 1-byte APDU `00`: answered 6700 once nothing follows it, and the card goes on.
        let asked = std::time::Instant::now();
        assert_eq!(frame(&mut s, &[0]).await, vec![0x67, 0x00]);
        assert!(asked.elapsed() >= vpcd::CONTROL_SILENCE);
        assert_eq!(frame(&mut s, &select_cps()).await, vec![0x90, 0x00]);
        stop_tx.send(true).unwrap();
        drop(s);
        task.await.unwrap();
    }
}
