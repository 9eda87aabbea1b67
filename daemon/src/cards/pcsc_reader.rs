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
struct PcscChannel {
    card: Card,
    reset: bool,
}

fn map_error(e: pcsc::Error) -> ChannelError {
    match e {
        pcsc::Error::RemovedCard | pcsc::Error::ResetCard | pcsc::Error::NoSmartcard => {
            ChannelError::CardRemoved
        }
        e => ChannelError::Reader(e.to_string()),
    }
}

impl CardChannel for PcscChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        match self.card.transmit(command, &mut buf) {
            Ok(resp) => return Ok(resp.to_vec()),
            // Reset by another application or re-inserted: pcsclite refused the command before it
            // reached the card. Reconnect and send it once more; the card's security state is gone.
            Err(pcsc::Error::ResetCard) => {
                self.reset = true;
                self.card
                    .reconnect(
                        ShareMode::Shared,
                        Protocols::ANY,
                        pcsc::Disposition::LeaveCard,
                    )
                    .map_err(map_error)?;
            }
            Err(e) => return Err(map_error(e)),
        }
        self.card
            .transmit(command, &mut buf)
            .map(<[u8]>::to_vec)
            .map_err(map_error)
    }

    fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }
}

/// Establishes the context and starts the thread.
pub(super) fn spawn(
    rx: mpsc::Receiver<Msg>,
    events: broadcast::Sender<CardEvent>,
    reg: Registry,
) -> Result<(Context, std::thread::JoinHandle<()>), CardsError> {
    let ctx = Context::establish(Scope::User).map_err(|e| CardsError::Pcsc(e.to_string()))?;
    let thread_ctx = ctx.clone();
    let handle = std::thread::Builder::new()
        .name("fsed-cards".into())
        .spawn(move || run(thread_ctx, rx, events, reg))
        .map_err(|e| CardsError::Pcsc(e.to_string()))?;
    Ok((ctx, handle))
}

fn run(
    ctx: Context,
    rx: mpsc::Receiver<Msg>,
    events: broadcast::Sender<CardEvent>,
    mut reg: Registry,
) {
    let mut states: Vec<ReaderState> =
        vec![ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)];
    loop {
        if !drain(&rx, &mut reg, &events) {
            tracing::info!("card thread stopping");
            return;
        }
        refresh_readers(&ctx, &mut states, &mut reg, &events);
        reopen_reset_cards(&ctx, &states, &mut reg, &events);
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
                match open_with_retries(&ctx, rs.name(), &name, rs.atr().to_vec()) {
                    Some(slot) => {
                        tracing::info!(reader = %name, kind = ?slot.kind, "card inserted");
                        let info = reg.insert(slot);
                        let _ = events.send(CardEvent::Inserted {
                            card: Box::new(info),
                        });
                    }
                    None => tracing::warn!(reader = %name, "card present but unusable"),
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

/// A card that failed an operation as removed or reset while its reader still holds a card was
/// reset or swapped under us: it is read again (its PIN state is gone), so the next call works.
fn reopen_reset_cards(
    ctx: &Context,
    states: &[ReaderState],
    reg: &mut Registry,
    events: &broadcast::Sender<CardEvent>,
) {
    let stale: Vec<String> = reg
        .slots
        .iter()
        .filter(|s| s.removed)
        .map(|s| s.reader.clone())
        .collect();
    for name in stale {
        reg.remove(&name);
        let _ = events.send(CardEvent::Removed {
            reader: name.clone(),
        });
        let Some(rs) = states.iter().find(|rs| rs.name().to_string_lossy() == name) else {
            continue;
        };
        if !rs.event_state().contains(State::PRESENT) {
            continue;
        }
        if let Some(slot) = open_with_retries(ctx, rs.name(), &name, rs.atr().to_vec()) {
            tracing::info!(reader = %name, kind = ?slot.kind, "card read again after a reset");
            let info = reg.insert(slot);
            let _ = events.send(CardEvent::Inserted {
                card: Box::new(info),
            });
        }
    }
}

/// Connects to a newly present card and reads it. A card just inserted, reset or swapped may fail
/// its first exchanges (pcsclite: "non-existent transaction", reset card): the first read is tried
/// again a few times, so that it never takes a restart to see a card.
fn open_with_retries(
    ctx: &Context,
    reader: &std::ffi::CStr,
    name: &str,
    atr: Vec<u8>,
) -> Option<Slot> {
    let mut last = None;
    for attempt in 0..5u64 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
        }
        match ctx.connect(reader, ShareMode::Shared, Protocols::ANY) {
            Ok(card) => {
                let slot = Slot::open(
                    name.to_string(),
                    atr.clone(),
                    Box::new(PcscChannel { card, reset: false }),
                );
                match &slot.unreadable {
                    None => return Some(slot),
                    Some(why) => {
                        tracing::info!(reader = %name, attempt, reason = %why, "card read failed; retrying")
                    }
                }
                last = Some(slot);
            }
            Err(e) => {
                tracing::info!(reader = %name, attempt, error = %e, "cannot connect to card; retrying")
            }
        }
    }
    if let Some(why) = last.as_ref().and_then(|s| s.unreadable.as_ref()) {
        tracing::warn!(reader = %name, reason = %why, "card unreadable after retries");
    }
    last
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
