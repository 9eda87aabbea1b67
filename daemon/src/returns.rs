//! Returns coming back: each ARL is checked against the lot it names (same
//! Merkle root) and applied to the queue in one transaction; so is each
//! payment return (sheets paid or refused). Only then is its file removed or
//! its broker message acked. Applying the same return twice changes nothing.
//! A payment return that comes before its lot's ARL is left where it is: its
//! file is kept, its message is held unacked while the returns behind it go
//! on, and it is applied once an ARL arrives. A message held for
//! [`HOLD_MAX`] without its ARL goes to the dead-letter queue, for a person.

use std::sync::Arc;
use std::time::Duration;

use fse_formats::ack::{Arl, PaymentOutcome, PaymentReturn};
use fse_formats::lot::SignedLot;
use fse_formats::wire;
use fse_queue::ArlOutcome;

use crate::events::Bus;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::transport::spool::{Entry, Spool};
use crate::transport::Transport;

/// What became of one incoming ARL.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Recorded.
    Recorded {
        /// The lot.
        lot_id: String,
        /// Positive or negative.
        status: fse_formats::ack::ArlStatus,
        /// Reasons of refusal.
        rejections: usize,
    },
    /// Already recorded before.
    Duplicate,
    /// Refused (unreadable, unknown lot, wrong root): kept out of the queue, logged.
    Refused(String),
    /// A payment return, applied (sheets paid or refused now, duplicates, ignored numbers).
    Payments(fse_queue::PaymentsApplied),
    /// A payment return for sheets whose ARL has not come yet: to be offered again.
    NotYet,
}

/// Which kind of return a message or file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ARL.
    Arl,
    /// A payment return.
    Payment,
}

impl Kind {
    /// From an AMQP `type` (an ARL when absent, as older insurers send them).
    pub fn of_type(message_type: Option<&str>) -> Kind {
        match message_type {
            Some(wire::TYPE_PAYMENT) => Kind::Payment,
            _ => Kind::Arl,
        }
    }

    /// From a spool file name.
    pub fn of_path(path: &std::path::Path) -> Kind {
        if path
            .extension()
            .is_some_and(|x| x == wire::SPOOL_PAYMENT_SUFFIX)
        {
            Kind::Payment
        } else {
            Kind::Arl
        }
    }
}

/// Applies one return of `kind` given as DER. `Err` only when the store failed (retry later).
pub async fn apply_return(store: &Store, kind: Kind, bytes: Vec<u8>) -> Result<Applied, String> {
    match kind {
        Kind::Arl => apply(store, bytes).await,
        Kind::Payment => apply_payments(store, bytes).await,
    }
}

/// Applies one payment return given as DER. `Err` only when the store failed.
pub async fn apply_payments(store: &Store, bytes: Vec<u8>) -> Result<Applied, String> {
    let ret = match PaymentReturn::from_der(&bytes) {
        Ok(r) => r,
        Err(e) => return Ok(Applied::Refused(format!("unreadable payment return: {e}"))),
    };
    let id = ret.lot_id.clone();
    if store
        .call(move |q| q.get_lot(&id))
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Ok(Applied::Refused(format!(
            "payment return for unknown lot {}",
            ret.lot_id
        )));
    }
    let done = store
        .call(move |q| q.record_payments(&ret))
        .await
        .map_err(|e| e.to_string())?;
    Ok(if done.not_yet {
        Applied::NotYet
    } else {
        Applied::Payments(done)
    })
}

/// Applies one ARL given as DER. `Err` only when the store failed (retry later).
pub async fn apply(store: &Store, bytes: Vec<u8>) -> Result<Applied, String> {
    let arl = match Arl::from_der(&bytes) {
        Ok(a) => a,
        Err(e) => return Ok(Applied::Refused(format!("unreadable ARL: {e}"))),
    };
    let id = arl.lot_id.clone();
    let Some(lot) = store
        .call(move |q| q.get_lot(&id))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Applied::Refused(format!(
            "ARL for unknown lot {}",
            arl.lot_id
        )));
    };
    let root = lot
        .signed_der
        .as_deref()
        .and_then(|d| SignedLot::from_der(d).ok())
        .map(|l| hex::encode(l.header.merkle_root));
    if root.as_deref() != Some(arl.merkle_root.as_str()) {
        return Ok(Applied::Refused(format!(
            "ARL for lot {} names another content (Merkle root mismatch)",
            arl.lot_id
        )));
    }
    let (lot_id, status, rejections) = (arl.lot_id.clone(), arl.status, arl.rejections.len());
    let outcome = store
        .call(move |q| q.record_arl(&arl, &bytes))
        .await
        .map_err(|e| e.to_string())?;
    Ok(match outcome {
        ArlOutcome::Applied => Applied::Recorded {
            lot_id,
            status,
            rejections,
        },
        ArlOutcome::Duplicate => Applied::Duplicate,
    })
}

/// Reads the spool inbox until shutdown.
///
/// It sleeps on inotify (a file renamed or written into the inbox), with a slow rescan as a
/// safety net; without inotify it rescans every 200 ms.
pub async fn run_spool(store: Store, spool: Spool, events: Bus, mut shutdown: Shutdown) {
    use futures_lite::StreamExt;
    let mut watch = inotify::Inotify::init().and_then(|ino| {
        ino.watches().add(
            &spool.inbox,
            inotify::WatchMask::MOVED_TO | inotify::WatchMask::CLOSE_WRITE,
        )?;
        ino.into_event_stream(vec![0u8; 4096])
    });
    if let Err(e) = &watch {
        tracing::warn!(error = %e, "no inotify on the spool inbox; rescanning it every 200 ms");
    }
    loop {
        let pending = {
            let s = spool.clone();
            tokio::task::spawn_blocking(move || s.pending_returns()).await
        };
        match pending {
            Ok(Ok(files)) => {
                for path in files {
                    let read = {
                        let (s, p) = (spool.clone(), path.clone());
                        tokio::task::spawn_blocking(move || s.read_return(&p)).await
                    };
                    let bytes = match read {
                        Ok(Ok(Entry::Read(bytes))) => bytes,
                        Ok(Ok(Entry::Gone)) => continue,
                        Ok(Ok(Entry::Quarantined { to, reason })) => {
                            tracing::warn!(
                                file = %path.display(),
                                to = %to.display(),
                                reason = %reason,
                                quarantined = spool.quarantined(),
                                "spool inbox entry not read: quarantined"
                            );
                            continue;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(file = %path.display(), error = %e, "spool inbox entry not read; will retry");
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "spool task failed");
                            continue;
                        }
                    };
                    match apply_return(&store, Kind::of_path(&path), bytes).await {
                        Ok(Applied::NotYet) => {
                            // Kept: its ARL is further on in the inbox or still to come.
                            tracing::info!(file = %path.display(), "payment return before its ARL; kept for later");
                        }
                        Ok(outcome) => {
                            log_outcome(&outcome, &path.display().to_string(), &events);
                            if let Err(e) = tokio::fs::remove_file(&path).await {
                                tracing::warn!(file = %path.display(), error = %e, "cannot remove applied ARL");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "ARL not applied; will retry"),
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the spool inbox"),
            Err(e) => tracing::warn!(error = %e, "spool task failed"),
        }
        let changed = async {
            match &mut watch {
                Ok(stream) => {
                    let _ = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = changed => {}
        }
    }
}

/// Longest time a payment return waits, held, for its lot's ARL before it is dead-lettered (the
/// ARL was lost, or dead-lettered itself): a person looks at both.
pub const HOLD_MAX: Duration = Duration::from_secs(15 * 60);

/// How often held payment returns are looked at for [`HOLD_MAX`].
const HOLD_CHECK: Duration = Duration::from_secs(5);

/// Payment returns that came before their ARL: unacked, tried again after each ARL applied.
struct Held(Vec<(crate::transport::amqp::ReturnMessage, tokio::time::Instant)>);

impl Held {
    /// Tries each held return again: applied ones are acked, refused ones dead-lettered.
    async fn retry(&mut self, store: &Store, events: &Bus) {
        let mut still = Vec::new();
        for (msg, since) in self.0.drain(..) {
            match apply_return(store, Kind::Payment, msg.body.clone()).await {
                Ok(Applied::NotYet) | Err(_) => still.push((msg, since)),
                Ok(outcome) => settle(msg, &outcome, events).await,
            }
        }
        self.0 = still;
    }

    /// Dead-letters the returns held longer than [`HOLD_MAX`].
    async fn expire(&mut self) {
        let (old, young): (Vec<_>, Vec<_>) = self
            .0
            .drain(..)
            .partition(|(_, since)| since.elapsed() >= HOLD_MAX);
        self.0 = young;
        for (msg, _) in old {
            tracing::warn!(
                lot = msg.message_id.as_deref().unwrap_or("?"),
                held = ?HOLD_MAX,
                "payment return whose ARL never came: moved to the dead-letter queue"
            );
            if let Err(e) = msg.dead_letter().await {
                tracing::warn!(error = %e, "a held return could not be dead-lettered; it will come again");
            }
        }
    }
}

/// Logs what became of a return and settles its message with the broker: acked once applied
/// (or a duplicate), dead-lettered when refused (kept for a person to look at, out of the way
/// of the others).
async fn settle(msg: crate::transport::amqp::ReturnMessage, outcome: &Applied, events: &Bus) {
    log_outcome(outcome, "amqp", events);
    if let Applied::Refused(_) = outcome {
        if let Err(e) = msg.dead_letter().await {
            tracing::warn!(error = %e, "a refused return could not be dead-lettered; it will come again");
        }
    } else if let Err(e) = msg.ack().await {
        tracing::warn!(error = %e, "ack of an applied return failed; it will come again and be a duplicate");
    }
}

/// First wait before the return consumer connects again.
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two connection attempts of the return consumer.
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// Consumes the AMQP return queue until shutdown, reconnecting on failure with a backoff.
pub async fn run_amqp(
    store: Store,
    transport: Arc<Transport>,
    events: Bus,
    mut shutdown: Shutdown,
) {
    let Transport::Amqp(amqp) = transport.as_ref() else {
        return;
    };
    // Reconnection backoff: 500 ms doubling to 10 s, back to the start once connected.
    let mut backoff = RECONNECT_FIRST;
    loop {
        let mut stream = match amqp.returns().await {
            Ok(s) => {
                backoff = RECONNECT_FIRST;
                s
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot consume returns; retrying");
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(backoff) => {
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                        continue;
                    }
                }
            }
        };
        // Held returns stay unacked: a reconnection gives them back to the broker, which
        // offers them again.
        let mut held = Held(Vec::new());
        let mut check = tokio::time::interval(HOLD_CHECK);
        loop {
            let next = tokio::select! {
                _ = shutdown.wait() => {
                    stream.close().await;
                    return;
                }
                n = stream.next() => n,
                _ = check.tick() => {
                    held.expire().await;
                    continue;
                }
            };
            let Some(Ok(msg)) = next else { break };
            let kind = Kind::of_type(msg.message_type.as_deref());
            match apply_return(&store, kind, msg.body.clone()).await {
                Ok(Applied::NotYet) => {
                    // Held, not acked; the returns behind it go on, and each ARL applied
                    // tries it again.
                    tracing::info!(
                        lot = msg.message_id.as_deref().unwrap_or("?"),
                        "payment return before its ARL; held until the ARL comes"
                    );
                    held.0.push((msg, tokio::time::Instant::now()));
                }
                Ok(outcome) => {
                    let arl = matches!(outcome, Applied::Recorded { .. });
                    settle(msg, &outcome, &events).await;
                    if arl {
                        held.retry(&store, &events).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "return not applied; reconnecting so the broker redelivers it");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Logs what became of a return (`source`: the spool file or `amqp`) and publishes its events.
pub(crate) fn log_outcome(outcome: &Applied, source: &str, events: &Bus) {
    match outcome {
        Applied::Recorded {
            lot_id,
            status,
            rejections,
        } => {
            tracing::info!(source, lot = %lot_id, ?status, "ARL recorded");
            events.publish(
                "arl.received",
                serde_json::json!({ "lot_id": lot_id, "status": status, "rejections": rejections }),
            );
        }
        Applied::Duplicate => tracing::info!(source, "duplicate ARL ignored"),
        Applied::Refused(why) => tracing::warn!(source, reason = %why, "return refused"),
        Applied::Payments(done) => {
            for p in &done.applied {
                let (name, fields) = match &p.outcome {
                    PaymentOutcome::Paid { amount_cents } => (
                        "sheet.paid",
                        serde_json::json!({ "sheet_id": p.sheet_id, "number": p.number, "lot_id": p.lot_id, "amount_cents": amount_cents, "insurer": p.insurer }),
                    ),
                    PaymentOutcome::Refused { code, reason } => (
                        "sheet.refused",
                        serde_json::json!({ "sheet_id": p.sheet_id, "number": p.number, "lot_id": p.lot_id, "code": code, "reason": reason, "insurer": p.insurer }),
                    ),
                };
                events.publish(name, fields);
            }
            for (number, why) in &done.ignored {
                tracing::warn!(source, number, reason = %why, "payment for a sheet that cannot be paid ignored");
            }
            tracing::info!(
                source,
                applied = done.applied.len(),
                duplicates = done.duplicates,
                "payment return recorded"
            );
        }
        Applied::NotYet => {}
    }
}
