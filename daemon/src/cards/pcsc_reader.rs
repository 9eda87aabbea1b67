//! The PC/SC backend: the card thread owns the `pcsc::Context`, blocks on
//! `SCardGetStatusChange` over every reader plus `\\?PnP?\Notification`
//! (reader hot-plug), and is woken by `SCardCancel` when a job is queued.

use std::ffi::CString;
use std::sync::mpsc;

use fse_formats::channel::{CardChannel, ChannelError};
use pcsc::{Card, Context, Protocols, ReaderState, Scope, ShareMode, State};
use tokio::sync::broadcast;

use super::{drain, CardEvent, CardsError, Msg, Registry, Slot};

/// A card connected through PC/SC.
struct PcscChannel(Card);

impl CardChannel for PcscChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        match self.0.transmit(command, &mut buf) {
            Ok(resp) => Ok(resp.to_vec()),
            Err(pcsc::Error::RemovedCard | pcsc::Error::ResetCard | pcsc::Error::NoSmartcard) => {
                Err(ChannelError::CardRemoved)
            }
            Err(e) => Err(ChannelError::Reader(e.to_string())),
        }
    }
}

/// Establishes the context and starts the thread.
pub(super) fn spawn(
    rx: mpsc::Receiver<Msg>,
    events: broadcast::Sender<CardEvent>,
) -> Result<(Context, std::thread::JoinHandle<()>), CardsError> {
    let ctx = Context::establish(Scope::User).map_err(|e| CardsError::Pcsc(e.to_string()))?;
    let thread_ctx = ctx.clone();
    let handle = std::thread::Builder::new()
        .name("fsed-cards".into())
        .spawn(move || run(thread_ctx, rx, events))
        .map_err(|e| CardsError::Pcsc(e.to_string()))?;
    Ok((ctx, handle))
}

fn run(ctx: Context, rx: mpsc::Receiver<Msg>, events: broadcast::Sender<CardEvent>) {
    let mut reg = Registry::default();
    let mut states: Vec<ReaderState> =
        vec![ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)];
    loop {
        if !drain(&rx, &mut reg, &events) {
            tracing::info!("card thread stopping");
            return;
        }
        refresh_readers(&ctx, &mut states, &mut reg, &events);
        match ctx.get_status_change(None, &mut states) {
            Ok(()) => {}
            Err(pcsc::Error::Cancelled) | Err(pcsc::Error::Timeout) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "SCardGetStatusChange failed");
                // The service may have restarted: wait for a job or a short pause before trying again.
                if let Ok(msg) = rx.recv_timeout(std::time::Duration::from_secs(1)) {
                    if !super::handle(msg, &mut reg, &events) {
                        return;
                    }
                }
                continue;
            }
        }
        for rs in states.iter_mut().skip(1) {
            let ev = rs.event_state();
            if !ev.contains(State::CHANGED) {
                continue;
            }
            let name = rs.name().to_string_lossy().into_owned();
            let was_present = rs.current_state().contains(State::PRESENT);
            let present = ev.contains(State::PRESENT) && !ev.contains(State::MUTE);
            if present && !was_present {
                let atr = rs.atr().to_vec();
                match ctx.connect(rs.name(), ShareMode::Shared, Protocols::ANY) {
                    Ok(card) => {
                        let slot = Slot::open(name.clone(), atr, Box::new(PcscChannel(card)));
                        tracing::info!(reader = %name, kind = ?slot.kind, "card inserted");
                        let _ = events.send(CardEvent::Inserted {
                            card: Box::new(slot.info()),
                        });
                        reg.insert(slot);
                    }
                    Err(e) => tracing::warn!(reader = %name, error = %e, "cannot connect to card"),
                }
            } else if !present && was_present && reg.remove(&name) {
                tracing::info!(reader = %name, "card removed");
                let _ = events.send(CardEvent::Removed { reader: name });
            }
            rs.sync_current_state();
        }
        states[0].sync_current_state();
    }
}

/// Adds reader states for new readers and drops those of unplugged readers.
fn refresh_readers(
    ctx: &Context,
    states: &mut Vec<ReaderState>,
    reg: &mut Registry,
    events: &broadcast::Sender<CardEvent>,
) {
    let readers: Vec<CString> = ctx.list_readers_owned().unwrap_or_default();
    states.retain(|rs| {
        let keep = rs.name() == pcsc::PNP_NOTIFICATION()
            || readers.iter().any(|r| r.as_c_str() == rs.name());
        if !keep {
            let name = rs.name().to_string_lossy().into_owned();
            if reg.remove(&name) {
                let _ = events.send(CardEvent::Removed { reader: name });
            }
        }
        keep
    });
    for r in readers {
        if !states.iter().any(|rs| rs.name() == r.as_c_str()) {
            states.push(ReaderState::new(r, State::UNAWARE));
        }
    }
}
