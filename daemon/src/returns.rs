//! Returns coming back: each ARL is checked against the lot it names (same
//! Merkle root) and applied to the queue in one transaction; so is each
//! payment return (sheets paid or refused). Only then is its file removed or
//! its broker message acked. Applying the same return twice changes nothing.
//!
//! A return is applied only when it is signed by an insurer (a
//! [`SignedReturn`] whose signature verifies, whose certificate chains to the
//! trust store as an insurer's), that insurer is the lot's destination, and its
//! content fits the lot: the same Merkle root (ARL), no sheet paid above what
//! it claims from that insurer (payment return). Anything else is refused with
//! a [`Reason`]: dead-lettered with it (AMQP headers; spool: moved to
//! `<inbox>/refused/` beside a `.reason` file), logged, counted per reason in
//! the queue and announced as `return.dead_lettered`. Without a trust store
//! every return is refused (`no_trust_store`).
//! A payment return that comes before its lot's ARL is left where it is: its
//! file is kept, its message is held unacked while the returns behind it go
//! on, and it is applied once an ARL arrives. A message held for
//! [`HOLD_MAX`] without its ARL goes to the dead-letter queue, for a person.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fse_formats::ack::{
    Arl, PaymentOutcome, PaymentReturn, ReturnAuthError, ReturnContent, SignedReturn,
};
use fse_formats::lot::SignedLot;
use fse_formats::pki::TrustStore;
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
    /// Refused: kept out of the queue, dead-lettered with its reason, logged and counted.
    Refused {
        /// Why, as a stable code.
        reason: Reason,
        /// The lot it names, when it could be read.
        lot_id: Option<String>,
        /// Why, in words.
        detail: String,
    },
    /// A payment return, applied (sheets paid or refused now, duplicates, ignored numbers).
    Payments(fse_queue::PaymentsApplied),
    /// A payment return for sheets whose ARL has not come yet: to be offered again.
    NotYet,
}

/// Why a return was refused: a stable code, counted per code (`queue.stats` → `dead_letters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not a return fsed can read (not DER, not canonical, unknown version or kind).
    Unreadable,
    /// A bare ARL or payment return: not signed by its insurer.
    Unsigned,
    /// No trust store is configured: no return can be authenticated.
    NoTrustStore,
    /// The certificate is not a trusted insurer's (chain, dates, CRL, key usage, insurer code).
    UntrustedCertificate,
    /// The signature is not the certificate key's over the return.
    BadSignature,
    /// Signed by an insurer that is not the lot's destination, or naming another insurer than
    /// the one that signed it.
    WrongInsurer,
    /// For a lot fsed does not have.
    UnknownLot,
    /// An ARL for another content of the lot (Merkle root mismatch).
    MerkleRootMismatch,
    /// A payment above what the sheet claims from that insurer.
    AmountAboveClaim,
    /// A payment return whose ARL never came within [`HOLD_MAX`].
    HeldTooLong,
}

impl Reason {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Unreadable => "unreadable",
            Reason::Unsigned => "unsigned",
            Reason::NoTrustStore => "no_trust_store",
            Reason::UntrustedCertificate => "untrusted_certificate",
            Reason::BadSignature => "bad_signature",
            Reason::WrongInsurer => "wrong_insurer",
            Reason::UnknownLot => "unknown_lot",
            Reason::MerkleRootMismatch => "merkle_root_mismatch",
            Reason::AmountAboveClaim => "amount_above_claim",
            Reason::HeldTooLong => "held_too_long",
        }
    }
}

fn refused(reason: Reason, lot_id: Option<&str>, detail: impl Into<String>) -> Applied {
    Applied::Refused {
        reason,
        lot_id: lot_id.map(str::to_string),
        detail: detail.into(),
    }
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

/// The signed return in `bytes`, holding a return of `kind`; else the refusal to apply (a bare
/// or unreadable return, a rights answer, or a return of another kind).
fn signed_return(bytes: &[u8], kind: Kind) -> Result<SignedReturn, Applied> {
    let signed = match SignedReturn::from_der(bytes) {
        Ok(s) => s,
        Err(e) => {
            let bare = match Arl::from_der(bytes) {
                Ok(a) => Some(a.lot_id),
                Err(_) => PaymentReturn::from_der(bytes).ok().map(|p| p.lot_id),
            };
            return Err(match bare {
                Some(lot) => refused(
                    Reason::Unsigned,
                    Some(&lot),
                    "a bare return, not signed by its insurer",
                ),
                None => refused(Reason::Unreadable, None, format!("unreadable return: {e}")),
            });
        }
    };
    let lot = Some(signed.content.lot_id());
    let content_kind = match &signed.content {
        ReturnContent::Arl(_) => Kind::Arl,
        ReturnContent::Payment(_) => Kind::Payment,
        ReturnContent::Rights(_) => {
            return Err(refused(
                Reason::Unreadable,
                None,
                "a rights answer, not a lot's return: it belongs on a rights reply queue",
            ))
        }
    };
    if content_kind != kind {
        return Err(refused(
            Reason::Unreadable,
            lot,
            format!("sent as {kind:?} but holds {content_kind:?}"),
        ));
    }
    Ok(signed)
}

/// Applies one return of `kind` given as DER (a [`SignedReturn`]), once it is authenticated
/// against `trust` and fits its lot. `Err` only when the store failed (retry later).
pub async fn apply_return(
    store: &Store,
    trust: Option<&TrustStore>,
    kind: Kind,
    bytes: Vec<u8>,
) -> Result<Applied, String> {
    let signed = match signed_return(&bytes, kind) {
        Ok(signed) => signed,
        Err(refusal) => return Ok(refusal),
    };
    let lot_id = signed.content.lot_id().to_string();
    let lot = Some(lot_id.as_str());
    let Some(trust) = trust else {
        return Ok(refused(
            Reason::NoTrustStore,
            lot,
            "no trust directory configured: returns cannot be authenticated",
        ));
    };
    let code = match signed.verify(trust, chrono::Utc::now().timestamp()) {
        Ok(code) => code,
        Err(ReturnAuthError::Untrusted(why)) => {
            return Ok(refused(Reason::UntrustedCertificate, lot, why))
        }
        Err(e @ ReturnAuthError::BadSignature) => {
            return Ok(refused(Reason::BadSignature, lot, e.to_string()))
        }
    };
    if signed.content.insurer() != code {
        return Ok(refused(
            Reason::WrongInsurer,
            lot,
            format!(
                "signed by insurer {code} but names insurer {}",
                signed.content.insurer()
            ),
        ));
    }
    if let ReturnContent::Arl(arl) = &signed.content {
        if is_attachment_lot(&arl.lot_id) {
            return apply_attachment_arl(store, arl, &code).await;
        }
    }
    let id = fse_queue::LotId::new(lot_id.as_str());
    let Some(row) = store
        .call(move |q| q.get_lot(&id))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(refused(
            Reason::UnknownLot,
            lot,
            format!("return for unknown lot {lot_id}"),
        ));
    };
    if row.destination != code {
        return Ok(refused(
            Reason::WrongInsurer,
            lot,
            format!(
                "lot {lot_id} was sent to {}, the return is signed by {code}",
                row.destination
            ),
        ));
    }
    let content = row
        .signed_der
        .as_deref()
        .and_then(|d| SignedLot::from_der(d).ok());
    match signed.content {
        ReturnContent::Arl(arl) => apply_arl(store, arl, content, bytes).await,
        ReturnContent::Payment(ret) => apply_payments(store, ret, content, &code).await,
        // Refused above, before any lookup.
        ReturnContent::Rights(_) => Ok(refused(Reason::Unreadable, lot, "a rights answer")),
    }
}

/// Applies an authenticated payment return of a lot of `code`, unless it pays a sheet more
/// than the sheet claims from that insurer. `Err` only when the store failed.
async fn apply_payments(
    store: &Store,
    ret: PaymentReturn,
    content: Option<SignedLot>,
    code: &str,
) -> Result<Applied, String> {
    let lot = Some(ret.lot_id.as_str());
    let Some(content) = content else {
        return Ok(refused(
            Reason::UnknownLot,
            lot,
            format!("lot {} has no signed content to pay", ret.lot_id),
        ));
    };
    // What each sheet of the lot claims from its AMO, by number.
    let claims: HashMap<u64, u64> = content
        .entries
        .iter()
        .filter_map(|e| fse_formats::fse::CareSheet::from_der(&e.sheet).ok())
        .map(|s| (s.number, s.amounts.amo_cents))
        .collect();
    for p in &ret.payments {
        if let (PaymentOutcome::Paid { amount_cents }, Some(claim)) =
            (&p.outcome, claims.get(&p.sheet_number))
        {
            if amount_cents > claim {
                return Ok(refused(
                    Reason::AmountAboveClaim,
                    lot,
                    format!(
                        "sheet {} paid {amount_cents} cents; it claims {claim} cents from {code}",
                        p.sheet_number
                    ),
                ));
            }
        }
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

/// Whether `lot_id` names an attachment lot: `<practitioner>-A<8 digits>`.
fn is_attachment_lot(lot_id: &str) -> bool {
    lot_id
        .rsplit_once("-A")
        .is_some_and(|(_, n)| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Applies an authenticated ARL of an attachment lot (idempotent): its merkle root must be the
/// SHA-256 of the attachment lot's DER as sent, its insurer the lot's destination.
async fn apply_attachment_arl(store: &Store, arl: &Arl, code: &str) -> Result<Applied, String> {
    use fse_queue::AttachmentArl;
    let lot = Some(arl.lot_id.as_str());
    let Some(digest) = hex::decode(&arl.merkle_root)
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
    else {
        return Ok(refused(Reason::Unreadable, lot, "merkle root not 32 bytes"));
    };
    let positive = arl.status == fse_formats::ack::ArlStatus::Positive;
    let reason = (!arl.rejections.is_empty()).then(|| {
        arl.rejections
            .iter()
            .map(|r| format!("{}: {}", r.code, r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let (id, insurer) = (arl.lot_id.clone(), code.to_string());
    let outcome = store
        .call(move |q| q.apply_attachment_arl(&id, &insurer, &digest, positive, reason.as_deref()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(match outcome {
        AttachmentArl::Applied(_) => Applied::Recorded {
            lot_id: arl.lot_id.clone(),
            status: arl.status,
            rejections: arl.rejections.len(),
        },
        AttachmentArl::Duplicate => Applied::Duplicate,
        AttachmentArl::Unknown => refused(
            Reason::UnknownLot,
            lot,
            format!("return for unknown attachment lot {}", arl.lot_id),
        ),
        AttachmentArl::Mismatch => refused(
            Reason::MerkleRootMismatch,
            lot,
            format!(
                "ARL for attachment lot {} names another content",
                arl.lot_id
            ),
        ),
        AttachmentArl::WrongInsurer(dest) => refused(
            Reason::WrongInsurer,
            lot,
            format!(
                "attachment lot {} was sent to {dest}, the return is signed by {code}",
                arl.lot_id
            ),
        ),
    })
}

/// Applies an authenticated ARL if it names the lot's content (its Merkle root); `bytes`, the
/// signed return, is kept with it. `Err` only when the store failed (retry later).
async fn apply_arl(
    store: &Store,
    arl: Arl,
    content: Option<SignedLot>,
    bytes: Vec<u8>,
) -> Result<Applied, String> {
    let root = content.map(|l| hex::encode(l.header.merkle_root));
    if root.as_deref() != Some(arl.merkle_root.as_str()) {
        return Ok(refused(
            Reason::MerkleRootMismatch,
            Some(&arl.lot_id),
            format!(
                "ARL for lot {} names another content (Merkle root mismatch)",
                arl.lot_id
            ),
        ));
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

/// The log line of a refused return (one call site: the log limiter holds back a flood of them
/// and counts it).
pub(crate) fn log_dead_letter(source: &str, reason: Reason, lot_id: Option<&str>, detail: &str) {
    tracing::warn!(
        source,
        reason = reason.code(),
        lot = lot_id.unwrap_or("?"),
        detail,
        "return refused: dead-lettered"
    );
}

/// Counts a refused return in the queue (per reason, with its event row), logs it and
/// publishes `return.dead_lettered`. A store failure is logged (the return is dead-lettered
/// anyway: its count is then one short).
async fn count_dead_letter(
    store: &Store,
    events: &Bus,
    source: &str,
    reason: Reason,
    lot_id: Option<&str>,
    detail: &str,
) {
    log_dead_letter(source, reason, lot_id, detail);
    let fields = serde_json::json!({
        "reason": reason.code(),
        "detail": detail,
        "lot_id": lot_id,
        "source": source,
    });
    let (row, lot) = (fields.clone(), lot_id.map(str::to_string));
    if let Err(e) = store
        .call(move |q| q.record_dead_letter(reason.code(), lot.as_deref(), row))
        .await
    {
        tracing::warn!(error = %e, "a dead-lettered return could not be counted");
    }
    events.publish("return.dead_lettered", fields);
}

/// Moves a refused spool file to `<inbox>/refused/`, with `<name>.reason` beside it (code and
/// words), as unfit entries are quarantined (never through a link, never over another file);
/// removes it when it cannot be moved, so it is not taken again.
async fn set_aside(spool: &Spool, path: &std::path::Path, reason: Reason, detail: &str) {
    let (spool, path) = (spool.clone(), path.to_path_buf());
    let why = format!("{}: {detail}", reason.code());
    let moved = tokio::task::spawn_blocking(move || {
        let dir = spool.inbox.join(wire::SPOOL_REFUSED_DIR);
        let moved = spool.move_aside(&path, &dir, &why);
        (moved, path)
    })
    .await;
    match moved {
        Ok((Ok(_), _)) => {}
        Ok((Err(e), path)) => {
            tracing::warn!(file = %path.display(), error = %e, "a refused return cannot be moved aside; removed");
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a refused return");
            }
        }
        Err(e) => tracing::warn!(error = %e, "moving a refused return aside did not finish"),
    }
}

/// Reads the spool inbox until shutdown.
///
/// It sleeps on inotify (a file renamed or written into the inbox), with a slow rescan as a
/// safety net; without inotify it rescans every 200 ms.
pub async fn run_spool(
    store: Store,
    spool: Spool,
    trust: Option<Arc<TrustStore>>,
    events: Bus,
    mut shutdown: Shutdown,
) {
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
                    let kind = Kind::of_path(&path);
                    match apply_return(&store, trust.as_deref(), kind, bytes).await {
                        Ok(Applied::NotYet) => {
                            // Kept: its ARL is further on in the inbox or still to come.
                            tracing::info!(file = %path.display(), "payment return before its ARL; kept for later");
                        }
                        Ok(Applied::Refused {
                            reason,
                            lot_id,
                            detail,
                        }) => {
                            let source = path.display().to_string();
                            count_dead_letter(
                                &store,
                                &events,
                                &source,
                                reason,
                                lot_id.as_deref(),
                                &detail,
                            )
                            .await;
                            set_aside(&spool, &path, reason, &detail).await;
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
    async fn retry(&mut self, store: &Store, trust: Option<&TrustStore>, events: &Bus) {
        let mut still = Vec::new();
        for (msg, since) in self.0.drain(..) {
            match apply_return(store, trust, Kind::Payment, msg.body.clone()).await {
                Ok(Applied::NotYet) | Err(_) => still.push((msg, since)),
                Ok(outcome) => settle(msg, &outcome, store, events).await,
            }
        }
        self.0 = still;
    }

    /// Dead-letters the returns held longer than [`HOLD_MAX`].
    async fn expire(&mut self, store: &Store, events: &Bus) {
        let (old, young): (Vec<_>, Vec<_>) = self
            .0
            .drain(..)
            .partition(|(_, since)| since.elapsed() >= HOLD_MAX);
        self.0 = young;
        for (msg, _) in old {
            let detail = format!("its lot's ARL did not come within {HOLD_MAX:?}");
            let lot = msg.message_id.clone();
            count_dead_letter(
                store,
                events,
                "amqp",
                Reason::HeldTooLong,
                lot.as_deref(),
                &detail,
            )
            .await;
            if let Err(e) = msg
                .dead_letter_because(Reason::HeldTooLong.code(), &detail)
                .await
            {
                tracing::warn!(error = %e, "a held return could not be dead-lettered; it will come again");
            }
        }
    }
}

/// Logs what became of a return and settles its message with the broker: acked once applied
/// (or a duplicate), dead-lettered when refused (kept for a person to look at, out of the way
/// of the others).
async fn settle(
    msg: crate::transport::amqp::ReturnMessage,
    outcome: &Applied,
    store: &Store,
    events: &Bus,
) {
    log_outcome(outcome, "amqp", events);
    if let Applied::Refused {
        reason,
        lot_id,
        detail,
    } = outcome
    {
        let lot = lot_id.as_deref().or(msg.message_id.as_deref());
        count_dead_letter(store, events, "amqp", *reason, lot, detail).await;
        if let Err(e) = msg.dead_letter_because(reason.code(), detail).await {
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
    trust: Option<Arc<TrustStore>>,
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
                    held.expire(&store, &events).await;
                    continue;
                }
            };
            let Some(Ok(msg)) = next else { break };
            let kind = Kind::of_type(msg.message_type.as_deref());
            match apply_return(&store, trust.as_deref(), kind, msg.body.clone()).await {
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
                    settle(msg, &outcome, &store, &events).await;
                    if arl {
                        held.retry(&store, trust.as_deref(), &events).await;
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
        // Logged and counted by `count_dead_letter`.
        Applied::Refused { .. } => {}
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
