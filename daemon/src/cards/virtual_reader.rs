//! fsed's embedded virtual reader: it listens where pcscd's vpcd driver
//! would (one TCP port per slot), or on a Unix socket per slot, and speaks
//! the vpcd protocol (`fse_formats::vpcd`), so simulated cards (`fse-sim
//! cards`) serve fsed directly on a machine without pcscd. A connection is a
//! card insertion; a broken connection is a removal.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::Duration;

use fse_formats::channel::{CardChannel, ChannelError};
use fse_formats::vpcd::{self, Control, Endpoint};
use tokio::sync::broadcast;

use super::{CardEvent, CardsError, Msg, Registry};

/// Where the virtual reader listens.
#[derive(Debug, Clone)]
pub struct VirtualReaderConfig {
    /// Where each slot listens; slot names are `fsed virtual reader <n>`.
    pub slots: Vec<Endpoint>,
}

/// A card's link: TCP, as to pcscd's vpcd driver, or a Unix socket.
enum Link {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Link {
    /// On a Unix socket, waits in `poll` for data alone: a thread blocked in `read` is also
    /// woken each time the card takes what this side wrote (the kernel signals room to write
    /// on the same wait queue), for nothing. The link's read timeout holds.
    fn wait_readable(&self) -> Result<(), ChannelError> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let Link::Unix(s) = self else {
            return Ok(());
        };
        let timeout = LINK_TIMEOUT
            .as_secs()
            .try_into()
            .ok()
            .map(|tv_sec| Timespec { tv_sec, tv_nsec: 0 });
        let mut fds = [PollFd::new(s, PollFlags::IN)];
        loop {
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) => return Err(ChannelError::CardRemoved),
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return Err(ChannelError::CardRemoved),
            }
        }
    }
}

/// How long a card may take to answer before it is taken as removed.
const LINK_TIMEOUT: Duration = Duration::from_secs(30);

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

/// A slot's listening socket.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `at`; a socket file left there (by a previous run) is replaced, any other file
    /// is an error.
    fn bind(at: &Endpoint) -> std::io::Result<Listener> {
        match at {
            Endpoint::Tcp(addr) => TcpListener::bind(addr).map(Listener::Tcp),
            Endpoint::Unix(path) => {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if meta.file_type().is_socket() {
                        std::fs::remove_file(path)?;
                    }
                }
                UnixListener::bind(path).map(Listener::Unix)
            }
        }
    }

    /// The next card to connect, its link set up (no Nagle delay on TCP, a read timeout).
    fn accept(&self) -> std::io::Result<Link> {
        let timeout = Some(LINK_TIMEOUT);
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                s.set_read_timeout(timeout)?;
                Ok(Link::Tcp(s))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_read_timeout(timeout)?;
                Ok(Link::Unix(s))
            }
        }
    }
}

/// A simulated card connected over the vpcd protocol.
struct VpcdChannel {
    stream: Link,
    /// Bytes read past the last frame.
    buf: Vec<u8>,
}

impl VpcdChannel {
    fn send(&mut self, payload: &[u8]) -> Result<(), ChannelError> {
        let frame =
            vpcd::encode(payload).ok_or_else(|| ChannelError::Reader("APDU over 64 KiB".into()))?;
        self.stream
            .write_all(&frame)
            .map_err(|_| ChannelError::CardRemoved)
    }

    /// The next frame's payload: one `read` usually brings the length and the payload
    /// together (two reads of an unbuffered stream cost a system call more per APDU).
    fn receive(&mut self) -> Result<Vec<u8>, ChannelError> {
        loop {
            if let Some(payload) = vpcd::take_frame(&mut self.buf) {
                return Ok(payload);
            }
            self.stream.wait_readable()?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ChannelError::CardRemoved),
                Ok(got) => self.buf.extend_from_slice(&chunk[..got]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ChannelError::CardRemoved),
            }
        }
    }

    fn power_on(&mut self) -> Result<Vec<u8>, ChannelError> {
        self.send(&[Control::PowerOn.byte()])?;
        self.send(&[Control::GetAtr.byte()])?;
        self.receive()
    }
}

impl CardChannel for VpcdChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.send(command)?;
        self.receive()
    }
}

/// Binds every slot and starts the acceptor threads and the card thread.
pub(super) fn spawn(
    cfg: VirtualReaderConfig,
    rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    events: broadcast::Sender<CardEvent>,
    reg: Registry,
) -> Result<std::thread::JoinHandle<()>, CardsError> {
    for (n, addr) in cfg.slots.iter().enumerate() {
        let listener = Listener::bind(addr)
            .map_err(|e| CardsError::Virtual(format!("slot {n} on {addr}: {e}")))?;
        let tx = tx.clone();
        let reader = format!("fsed virtual reader {n}");
        std::thread::Builder::new()
            .name(format!("fsed-vreader-{n}"))
            .spawn(move || accept_loop(listener, reader, tx))
            .map_err(|e| CardsError::Virtual(e.to_string()))?;
    }
    std::thread::Builder::new()
        .name("fsed-cards".into())
        .spawn(move || {
            let mut reg = reg;
            // Blocks on the channel: an idle card thread costs nothing.
            while let Ok(msg) = rx.recv() {
                if !super::handle(msg, &mut reg, &events) {
                    break;
                }
                drop_dead_slots(&mut reg, &events);
            }
        })
        .map_err(|e| CardsError::Virtual(e.to_string()))
}

fn accept_loop(listener: Listener, reader: String, tx: mpsc::Sender<Msg>) {
    loop {
        let stream = match listener.accept() {
            Ok(stream) => stream,
            // A failed accept (the peer gone already, descriptors short): wait for the next.
            Err(e) => {
                tracing::debug!(reader = %reader, error = %e, "virtual card link not accepted");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let mut channel = VpcdChannel {
            stream,
            buf: Vec::new(),
        };
        match channel.power_on() {
            Ok(atr) => {
                let msg = Msg::VirtualInserted {
                    reader: reader.clone(),
                    atr,
                    channel: Box::new(channel),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(reader = %reader, error = %e, "virtual card did not answer its ATR")
            }
        }
    }
}

/// Forgets cards whose link broke during the last job.
fn drop_dead_slots(reg: &mut Registry, events: &broadcast::Sender<CardEvent>) {
    let dead: Vec<String> = reg
        .slots
        .iter()
        .filter(|s| s.removed)
        .map(|s| s.reader.clone())
        .collect();
    for reader in dead {
        reg.remove(&reader);
        tracing::info!(reader = %reader, "card removed");
        let _ = events.send(CardEvent::Removed { reader });
    }
}
