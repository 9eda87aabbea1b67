//! The PC/SC backend: the card thread owns the `pcsc::Context`, blocks on
//! `SCardGetStatusChange` over every reader plus `\\?PnP?\Notification`
//! (reader hot-plug), and is woken by `SCardCancel` when a job is queued.
//!
//! pcscd may be absent at start (socket activation: it comes later) and may stop or restart
//! under fsed (an upgrade, a crash, a resume): every call on a context of a pcscd gone fails
//! for good. The thread then forgets that context's readers and cards (their card sessions and
//! PIN states died with it: nothing is replayed), establishes a new context every second until
//! one works, and finds the readers and cards again, with the events of each change.

use std::ffi::CString;
use std::sync::{mpsc, Arc, Mutex};

use fse_formats::channel::{CardChannel, ChannelError};
use pcsc::{Card, Context, Protocols, ReaderState, Scope, ShareMode, State};
use tokio::sync::broadcast;

use super::{drain, CardEvent, CardsError, Msg, Registry, ServiceState, ServiceView, Slot};

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
        // The card in the reader no longer speaks the protocol this handle connected with: it
        // was pulled out and another power-up (or card) came before pcsclite told this handle
        // (seen with vpcd when a card is pulled mid-command on a busy machine). The session,
        // and its PIN state, went with the card.
        pcsc::Error::ProtoMismatch => ChannelError::CardRemoved,
        // pcscd stopped or restarted under the card: the card session (and its PIN state) is
        // gone as surely as if the card had been pulled out.
        // The next SCardGetStatusChange finds the context dead and the thread starts again.
        e if context_lost(e) || e == pcsc::Error::ReaderUnavailable => ChannelError::CardRemoved,
        e => ChannelError::Reader(e.to_string()),
    }
}

/// An answer without its status word is a card that left mid-command: pcscd's vpcd driver,
/// whose card closed the link, reports success with nothing. The card session is gone (so is
/// its PIN state); the command never counts as answered, least of all as a wrong PIN.
fn answered(resp: &[u8]) -> Result<Vec<u8>, ChannelError> {
    if resp.len() < 2 {
        return Err(ChannelError::CardRemoved);
    }
    Ok(resp.to_vec())
}

impl CardChannel for PcscChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        match self.card.transmit(command, &mut buf) {
            Ok(resp) => return answered(resp),
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
            .map_err(map_error)
            .and_then(answered)
    }

    fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }
}

/// How long the card thread waits before trying again to reach pcscd (not running yet, or gone
/// and not back), while still running the jobs it is given.
pub(super) const RETRY_SERVICE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a PC/SC error means the context itself is dead (pcscd stopped, restarted or never
/// ran): the thread must establish a new one, since every later call on this one fails.
fn context_lost(e: pcsc::Error) -> bool {
    matches!(
        e,
        pcsc::Error::NoService
            | pcsc::Error::ServiceStopped
            | pcsc::Error::InvalidHandle
            | pcsc::Error::CommError
            | pcsc::Error::InternalError
    )
}

/// Starts the card thread. It does not wait for pcscd: pcscd is socket-activated and may come
/// later (or restart); the thread establishes its context when it can and again whenever it is
/// lost, publishing the current one in `current` for [`super::Cards`]'s wake-ups.
pub(super) fn spawn(
    rx: mpsc::Receiver<Msg>,
    events: broadcast::Sender<CardEvent>,
    reg: Registry,
    current: CurrentContext,
    service: ServiceView,
) -> Result<std::thread::JoinHandle<()>, CardsError> {
    // A first try here, so that the service's first status says whether pcscd answered.
    let first = match Context::establish(Scope::User) {
        Ok(ctx) => {
            set_current(&current, Some(ctx.clone()));
            service.set(ServiceState::Connected, None, Vec::new());
            Some(ctx)
        }
        Err(e) => {
            service.set(ServiceState::Waiting, Some(e.to_string()), Vec::new());
            None
        }
    };
    std::thread::Builder::new()
        .name("fsed-cards".into())
        .spawn(move || run(first, rx, events, reg, current, service))
        .map_err(|e| CardsError::Pcsc(e.to_string()))
}

/// The context the card thread uses now, if any: [`super::Cards`] cancels its waits through it.
pub(super) type CurrentContext = Arc<Mutex<Option<Context>>>;

fn set_current(current: &CurrentContext, ctx: Option<Context>) {
    // A poisoned lock only means a panic while swapping an Option: the value is whole.
    *current.lock().unwrap_or_else(|p| p.into_inner()) = ctx;
}

fn run(
    mut first: Option<Context>,
    rx: mpsc::Receiver<Msg>,
    events: broadcast::Sender<CardEvent>,
    mut reg: Registry,
    current: CurrentContext,
    service: ServiceView,
) {
    let mut last_error: Option<String> = None;
    // Until a first context, fsed is waiting for pcscd; after one, it has lost it.
    let mut absent = ServiceState::Waiting;
    loop {
        // No context: establish one, running the jobs that come meanwhile (they find no card).
        let ctx = match first
            .take()
            .map_or_else(|| Context::establish(Scope::User), Ok)
        {
            Ok(ctx) => ctx,
            Err(e) => {
                let why = e.to_string();
                if last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!(error = %why, "pcscd not reachable; waiting for it");
                    last_error = Some(why.clone());
                }
                service.set(absent, Some(why), Vec::new());
                match rx.recv_timeout(RETRY_SERVICE) {
                    Ok(msg) => {
                        if !super::handle(msg, &mut reg, &events) || !drain(&rx, &mut reg, &events)
                        {
                            tracing::info!("card thread stopping");
                            return;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                continue;
            }
        };
        tracing::info!("PC/SC context established");
        last_error = None;
        set_current(&current, Some(ctx.clone()));
        service.set(ServiceState::Connected, None, Vec::new());
        let began = std::time::Instant::now();
        let lost = match session(&ctx, &rx, &events, &mut reg, &service) {
            Session::Stop => {
                tracing::info!("card thread stopping");
                return;
            }
            Session::Lost(e) => e,
        };
        // The context is dead: so are its card handles and their PIN states. Forget them (they
        // are read again, PIN not verified, once pcscd is back) and say so.
        set_current(&current, None);
        tracing::warn!(error = %lost, "PC/SC context lost (pcscd stopped or restarted); establishing a new one");
        let readers = service.take_readers();
        absent = ServiceState::Lost;
        service.set(absent, Some(lost.to_string()), Vec::new());
        for slot in std::mem::take(&mut reg.slots) {
            let _ = events.send(CardEvent::Removed {
                reader: slot.reader,
            });
        }
        reg.publish();
        for reader in readers {
            let _ = events.send(CardEvent::ReaderLost {
                reader,
                reason: lost.to_string(),
            });
        }
        drop(ctx);
        // A context that dies at once (pcscd still going down) is not established again at once:
        // the jobs that come meanwhile still run.
        while let Some(left) = RETRY_SERVICE.checked_sub(began.elapsed()) {
            match rx.recv_timeout(left) {
                Ok(msg) => {
                    if !super::handle(msg, &mut reg, &events) {
                        tracing::info!("card thread stopping");
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// How a session on one context ended.
enum Session {
    /// Asked to stop.
    Stop,
    /// The context died with this error.
    Lost(pcsc::Error),
}

fn session(
    ctx: &Context,
    rx: &mpsc::Receiver<Msg>,
    events: &broadcast::Sender<CardEvent>,
    reg: &mut Registry,
    service: &ServiceView,
) -> Session {
    let mut states: Vec<ReaderState> =
        vec![ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)];
    loop {
        if !drain(rx, reg, events) {
            return Session::Stop;
        }
        if let Err(e) = refresh_readers(ctx, &mut states, reg, events, service) {
            return Session::Lost(e);
        }
        reopen_reset_cards(ctx, &states, reg, events);
        match ctx.get_status_change(None, &mut states) {
            Ok(()) => {}
            Err(pcsc::Error::Cancelled) | Err(pcsc::Error::Timeout) => continue,
            Err(e) if context_lost(e) => return Session::Lost(e),
            Err(e) => {
                tracing::warn!(error = %e, "SCardGetStatusChange failed");
                // Wait for a job or a short pause before trying again.
                if let Ok(msg) = rx.recv_timeout(RETRY_SERVICE) {
                    if !super::handle(msg, reg, events) {
                        return Session::Stop;
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
                match open_with_retries(ctx, rs.name(), &name, rs.atr().to_vec()) {
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

/// Adds reader states for new readers and drops those of unplugged readers; fails when the
/// context is dead.
fn refresh_readers(
    ctx: &Context,
    states: &mut Vec<ReaderState>,
    reg: &mut Registry,
    events: &broadcast::Sender<CardEvent>,
    service: &ServiceView,
) -> Result<(), pcsc::Error> {
    let readers: Vec<CString> = match ctx.list_readers_owned() {
        Ok(r) => r,
        Err(e) if context_lost(e) => return Err(e),
        Err(_) => Vec::new(),
    };
    states.retain(|rs| {
        let keep = rs.name() == pcsc::PNP_NOTIFICATION()
            || readers.iter().any(|r| r.as_c_str() == rs.name());
        if !keep {
            let name = rs.name().to_string_lossy().into_owned();
            if reg.remove(&name) {
                let _ = events.send(CardEvent::Removed {
                    reader: name.clone(),
                });
            }
            tracing::info!(reader = %name, "reader gone");
            let _ = events.send(CardEvent::ReaderLost {
                reader: name,
                reason: "unplugged".into(),
            });
        }
        keep
    });
    for r in readers {
        if !states.iter().any(|rs| rs.name() == r.as_c_str()) {
            let name = r.to_string_lossy().into_owned();
            tracing::info!(reader = %name, "reader found");
            let _ = events.send(CardEvent::ReaderFound { reader: name });
            states.push(ReaderState::new(r, State::UNAWARE));
        }
    }
    service.set_readers(
        states
            .iter()
            .skip(1)
            .map(|rs| rs.name().to_string_lossy().into_owned())
            .collect(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_gone_under_its_handle_is_a_removal_never_a_reader_fault() {
        for e in [
            pcsc::Error::RemovedCard,
            pcsc::Error::ResetCard,
            pcsc::Error::NoSmartcard,
            pcsc::Error::ProtoMismatch,
            pcsc::Error::NoService,
            pcsc::Error::ReaderUnavailable,
        ] {
            assert!(matches!(map_error(e), ChannelError::CardRemoved), "{e:?}");
        }
        assert!(matches!(
            map_error(pcsc::Error::InsufficientBuffer),
            ChannelError::Reader(_)
        ));
        assert!(matches!(answered(&[0x90]), Err(ChannelError::CardRemoved)));
        assert_eq!(answered(&[0x90, 0x00]).unwrap(), vec![0x90, 0x00]);
    }
}
