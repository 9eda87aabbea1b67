//! The card side of the vpcd protocol (`fse_formats::vpcd`): connects to a
//! reader — pcscd's vpcd driver, or fsed's embedded virtual reader — and
//! answers its control frames and APDUs with a virtual card. Reconnects
//! with backoff when the reader is absent or the link drops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::vpcd::{self, Control, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
}

impl Latency {
    /// No delay: unit tests and benchmarks of fsed's own costs.
    pub const NONE: Latency = Latency {
        apdu: Duration::ZERO,
        signature: Duration::ZERO,
    };
    /// The order of a real card: 20 ms per APDU, 150 ms per signature.
    pub const REAL_CARD: Latency = Latency {
        apdu: Duration::from_millis(20),
        signature: Duration::from_millis(150),
    };

    /// The delay before answering `apdu`.
    pub fn for_apdu(&self, apdu: &[u8]) -> Duration {
        match apdu.get(1) {
            Some(&(fse_formats::apdu::INS_PSO | fse_formats::apdu::INS_INTERNAL_AUTHENTICATE)) => {
                self.signature
            }
            _ => self.apdu,
        }
    }
}

/// A card shared between its link and whoever scripts it.
pub type SharedCard = Arc<Mutex<Box<dyn VirtualCard>>>;

/// Shows `card` on the reader at `addr` until `stop` turns true.
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
        match TcpStream::connect(&addr).await {
            Ok(stream) => {
                backoff = Duration::from_millis(100);
                tracing::info!(reader = %addr, "card connected to reader");
                let _ = stream.set_nodelay(true);
                tokio::select! {
                    r = session(stream, &card, latency) => {
                        if let Err(e) = r {
                            tracing::info!(reader = %addr, error = %e, "reader link closed");
                        }
                    }
                    _ = stop.changed() => return,
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

fn lock(card: &SharedCard) -> std::sync::MutexGuard<'_, Box<dyn VirtualCard>> {
    // A poisoned card lock only means a panic elsewhere; the card state is still usable.
    card.lock().unwrap_or_else(|p| p.into_inner())
}

async fn session(
    mut stream: TcpStream,
    card: &SharedCard,
    latency: Latency,
) -> std::io::Result<()> {
    loop {
        // vpcd writes the length and the APDU separately; acknowledging at once spares the
        // sender's Nagle delay against our delayed ACK (about 40 ms per APDU otherwise).
        let _ = socket2::SockRef::from(&stream).set_tcp_quickack(true);
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let _ = socket2::SockRef::from(&stream).set_tcp_quickack(true);
        let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut payload).await?;
        let reply = match Frame::classify(&payload) {
            Frame::Control(Control::GetAtr) => Some(lock(card).atr()),
            Frame::Control(Control::PowerOff | Control::Reset) => {
                lock(card).reset();
                None
            }
            Frame::Control(Control::PowerOn) | Frame::UnknownControl(_) => None,
            Frame::Apdu(apdu) => {
                let delay = latency.for_apdu(&apdu);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some(lock(card).process(&apdu))
            }
        };
        if let Some(bytes) = reply {
            let frame = vpcd::encode(&bytes)
                .ok_or_else(|| std::io::Error::other("response over 64 KiB"))?;
            stream.write_all(&frame).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles;

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
            let mut select = vec![
                0x00,
                0xA4,
                0x04,
                0x0C,
                fse_formats::cards::AID_CPS.len() as u8,
            ];
            select.extend_from_slice(fse_formats::cards::AID_CPS);
            assert_eq!(frame(&mut s, &select).await, vec![0x90, 0x00]);
            drop(s);
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
