//! Lots: closes them (by size, by age, or on request), has the CPS of their
//! practitioner sign each one once, and hands signed lots to the transport.
//! Lots whose CPS is absent or not unlocked wait, durably, untouched.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fse_formats::lot::{self, LotEntry, LotHeader, SALT_LEN};
use fse_formats::merkle;
use fse_queue::{CompactTime, GroupWrite, GroupWritten, LotId, LotRow};
use rand::RngCore;
use tokio::sync::Notify;

use crate::cards::Cards;

mod attachments;
pub(crate) use attachments::{degraded, missing_papers, paper_cutoff};
mod sign;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::transport::Transport;
use sign::{encode_dres_and_cms, LotEntries, SignError};

/// What the batcher needs.
pub struct Batcher {
    /// The queue.
    pub store: Store,
    /// The cards.
    pub cards: Cards,
    /// The cards of the other fseds: a practitioner whose CPS is there has his lots signed
    /// there.
    pub remote: crate::remote::RemoteCards,
    /// The salted entries of lots sent to a remote CPS and not yet stored signed, by lot id: a
    /// pass after a cut asks for the very same header (the same `request_id`), which the other
    /// fsed answers from memory without signing twice.
    pub remote_entries: std::sync::Mutex<std::collections::HashMap<String, RemoteEntries>>,
    /// The transport.
    pub transport: Arc<Transport>,
    /// Lot size and age limits, deadline alarm days, daily closing time, window, ARL timeout
    /// and resends: read at each turn, so that a reload (SIGHUP) applies at the next one.
    pub live: crate::config::Live,
    /// Woken on new sheets, on `lots.close` and on `transmit.now`.
    pub wake: Arc<Notify>,
    /// Set by `lots.close`: close whatever is open at the next turn.
    pub close_now: Arc<std::sync::atomic::AtomicBool>,
    /// Set by `transmit.now`: the next turn sends even while a failed send's backoff runs (a
    /// person asked; the backoff is for the batcher's own retries).
    pub send_now: Arc<std::sync::atomic::AtomicBool>,
    /// Where lot events go.
    pub events: crate::events::Bus,
    /// Sheets whose deadline alarm this process already published.
    pub alarmed: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// The last local day `close_at` closed the lots.
    pub closed_on: std::sync::Mutex<Option<chrono::NaiveDate>>,
    /// The pause after the next failed send ([`RETRY`] doubling to [`RETRY_MAX`] while sends
    /// keep failing, back to [`RETRY`] after a success), and until when sends wait.
    pub backoff: std::sync::Mutex<(Duration, Option<std::time::Instant>)>,
    /// Lots whose unroutable alarm this process already published.
    pub unroutable: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The batcher as a client of the cards: its lot signatures take their turns on a CPS.
    pub caller: crate::caller::Caller,
    /// `[attachments]`: the days a degraded-mode sheet's paper may wait.
    pub attachments: crate::config::AttachmentsSection,
    /// Sheets whose `sheet.paper_missing` alarm this process already published.
    /// Sheets whose `sheet.paper_missing` alarm this process already published, and when it
    /// last looked.
    #[allow(clippy::type_complexity)]
    pub paper_alarmed:
        std::sync::Mutex<(std::collections::HashSet<i64>, Option<std::time::Instant>)>,
}

/// Whether the daily closing is due at `now` (it was not done today and the time has come),
/// and how long until the next one.
fn daily_close(
    close_at: Option<chrono::NaiveTime>,
    done_on: Option<chrono::NaiveDate>,
    now: chrono::NaiveDateTime,
) -> (bool, Option<Duration>) {
    let Some(at) = close_at else {
        return (false, None);
    };
    let today = now.date();
    let due = now.time() >= at && done_on != Some(today);
    let next_day = if now.time() >= at {
        today.succ_opt().unwrap_or(today)
    } else {
        today
    };
    let wait = (next_day.and_time(at) - now).to_std().unwrap_or_default();
    (due, Some(wait))
}

/// The shortest time from one turn's start to the next.
const MIN_TURN_GAP: Duration = Duration::from_millis(20);

/// How often deadlines are looked at when nothing else wakes the batcher.
const DEADLINE_CHECK: Duration = Duration::from_secs(3600);

/// The last day (`YYYYMMDD`) whose deadlines raise an alarm today: `days` working days ahead.
pub fn alarm_cutoff(days: u32) -> String {
    let today = Utc::now().date_naive();
    fse_formats::calendar::add_working_days(today, days, fse_formats::calendar::Region::Metropole)
        .unwrap_or(today)
        .format("%Y%m%d")
        .to_string()
}

/// A lot's salted entries and DREs, kept while a remote CPS signs it ([`Batcher::remote_entries`]).
pub struct RemoteEntries(LotEntries);

/// The shortest wait for the next resend (a lot due now and not sent is looked at again after it,
/// not at once).
const RESEND_MIN_GAP: Duration = Duration::from_secs(1);

/// How often lots waiting for a remote CPS are looked at again.
const REMOTE_RETRY: Duration = Duration::from_secs(5);

/// Pause before a failed turn is tried again, and the first pause after a failed send.
const RETRY: Duration = Duration::from_secs(2);
/// Longest pause between two sends while the broker keeps failing (the backoff doubles up to it).
const RETRY_MAX: Duration = Duration::from_secs(10);

impl Batcher {
    /// Publishes a window of signed lots (their stored bytes), a result per lot: what a first
    /// sending and a resend share.
    async fn publish<L: std::borrow::Borrow<LotRow>>(
        &self,
        window: &[L],
    ) -> Vec<Result<(), crate::transport::SendFailure>> {
        let batch: Vec<(&str, &str, &[u8])> = window
            .iter()
            .map(|l| {
                let l = l.borrow();
                (
                    l.id.as_str(),
                    l.destination.as_str(),
                    l.signed_der.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        self.transport.send_many(&batch).await
    }

    /// Runs until shutdown: at most one turn per wake-up, and one per second for lot ages.
    ///
    /// Between turns it sleeps until woken (new sheet, card inserted, PIN verified, API request) or
    /// until the next lot comes of age or a failed send is due again: an idle batcher costs nothing.
    pub async fn run(self, mut shutdown: Shutdown) {
        loop {
            let started = tokio::time::Instant::now();
            let next = match self.turn().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "batcher turn failed; retrying");
                    Some(RETRY)
                }
            };
            let timer = async {
                match next {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = self.wake.notified() => {}
                _ = timer => {}
            }
            // Wake-ups come with every new sheet: under load, one turn serves many of them.
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep_until(started + MIN_TURN_GAP) => {}
            }
        }
    }

    /// One pass: close, sign, send. Returns when the next timed pass is due, if one is.
    pub async fn turn(&self) -> Result<Option<Duration>, String> {
        let asked = self.close_now.load(std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.paper_alarms(asked).await {
            tracing::warn!(error = %e, "look for degraded-mode sheets without their paper failed");
        }
        let age = self.close().await?;
        let remote = self.sign().await?;
        // After a failed send, sends wait for the backoff whatever wakes the batcher, unless
        // `transmit.now` asked (the pause still doubles if this send fails too).
        let hold = {
            let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            if self
                .send_now
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                b.1 = None;
            }
            b.1.and_then(|at| at.checked_duration_since(std::time::Instant::now()))
        };
        let (retry, resend) = match hold {
            Some(left) => (Some(left), None),
            None => {
                let failed = self.send().await?.is_some();
                // The documents of the lots now sent follow them.
                let failed = self.send_attachments().await? || failed;
                // Lots whose ARL did not come go again once the new ones are out (not while the
                // broker fails: the backoff comes first).
                let (failed, resend) = if failed {
                    (true, None)
                } else {
                    self.resend().await?
                };
                let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                if failed {
                    let pause = b.0.max(RETRY);
                    *b = (
                        (pause * 2).min(RETRY_MAX),
                        Some(std::time::Instant::now() + pause),
                    );
                    (Some(pause), resend)
                } else {
                    *b = (RETRY, None);
                    (None, resend)
                }
            }
        };
        Ok([age, retry, resend, remote].into_iter().flatten().min())
    }

    /// Sends again, same bytes and lot id, each lot sent whose ARL has not come within
    /// `transport.arl_timeout_secs` of its last sending and that has resends left
    /// (`transport.arl_max_resends`): the insurer dedups by lot id and answers it again. Each
    /// resend confirmed is counted in the queue and raises `lot.resent`. Returns whether a
    /// resend failed, and when the next one is due.
    async fn resend(&self) -> Result<(bool, Option<Duration>), String> {
        let live = self.live.get();
        let (timeout, max) = (live.arl_timeout, live.arl_max_resends);
        let cutoff = fse_queue::stamp_ago(timeout);
        let lots = self
            .store
            .read(move |q| q.lots_to_resend(cutoff, max))
            .await
            .map_err(|e| e.to_string())?;
        let mut failed = false;
        for window in lots.chunks(live.window.max(1)) {
            let results = self.publish(window).await;
            for (lot, result) in window.iter().zip(results) {
                if let Err(e) = result {
                    failed = true;
                    tracing::warn!(lot = %lot.id, error = %e, "lot without its ARL not sent again; tried again later");
                    continue;
                }
                let id = lot.id.clone();
                let Some(attempt) = self
                    .store
                    .call(move |q| q.mark_lot_resent(&id))
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    // Its ARL came meanwhile: the insurer's second answer is a duplicate.
                    continue;
                };
                let last = attempt >= max;
                tracing::warn!(lot = %lot.id, destination = %lot.destination, attempt, max_resends = max, timeout = ?timeout, "no ARL for this lot in time: sent again");
                if last {
                    tracing::error!(lot = %lot.id, attempt, "last resend of a lot without its ARL: if none comes, ask the insurer (the alarm stays in queue.alarms)");
                }
                self.events.publish(
                    "lot.resent",
                    serde_json::json!({ "lot_id": lot.id, "destination": lot.destination, "sheets": lot.sheet_count, "attempt": attempt, "max_resends": max, "last": last }),
                );
            }
            if failed {
                return Ok((true, None));
            }
        }
        let oldest = self
            .store
            .read(move |q| q.next_resend_from(max))
            .await
            .map_err(|e| e.to_string())?;
        let next = oldest.and_then(|sent| {
            let due = sent
                .time()
                .checked_add_signed(chrono::Duration::from_std(timeout).ok()?)?;
            Some(
                (due - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .max(RESEND_MIN_GAP),
            )
        });
        Ok((false, next))
    }

    /// Publishes a `sheet.deadline` event for each sheet newly near its deadline; returns
    /// whether one of them is still open (not in a lot).
    async fn deadlines(&self) -> Result<bool, String> {
        let cutoff = alarm_cutoff(self.live.get().deadline_alarm_days);
        let alarms = self
            .store
            .read(move |q| q.deadline_alarms(&cutoff))
            .await
            .map_err(|e| e.to_string())?;
        let mut seen = self.alarmed.lock().unwrap_or_else(|p| p.into_inner());
        for a in &alarms {
            if seen.insert(a.id.get()) {
                tracing::warn!(sheet = a.id.get(), deadline = %a.deadline, state = %a.state, "sending deadline near");
                self.events.publish(
                    "sheet.deadline",
                    serde_json::json!({ "sheet_id": a.id, "number": a.number, "practitioner_id": a.practitioner_id, "deadline": a.deadline, "state": a.state, "lot_id": a.lot_id }),
                );
            }
        }
        Ok(alarms.iter().any(|a| a.state == "accepted"))
    }

    /// Closes lots that are full, old enough, holding a sheet near its deadline, or asked for;
    /// returns when the oldest open sheet comes of age (or deadlines are due a look).
    async fn close(&self) -> Result<Option<Duration>, String> {
        let urgent = self.deadlines().await?;
        let live = self.live.get();
        let local = chrono::Local::now().naive_local();
        let (daily, until_daily) = {
            let mut done = self.closed_on.lock().unwrap_or_else(|p| p.into_inner());
            let (due, wait) = daily_close(live.close_at, *done, local);
            if due {
                *done = Some(local.date());
            }
            (due, wait)
        };
        let max = live.max_sheets;
        let (pending, oldest) = self
            .store
            .read(move |q| q.accepted_summary(max))
            .await
            .map_err(|e| e.to_string())?;
        let next_look = until_daily.map_or(DEADLINE_CHECK, |d| d.min(DEADLINE_CHECK));
        let Some(oldest) = oldest else {
            return Ok(Some(next_look));
        };
        let asked = self
            .close_now
            .swap(false, std::sync::atomic::Ordering::SeqCst)
            || daily;
        let age = (Utc::now().naive_utc() - oldest.time())
            .to_std()
            .unwrap_or_default();
        let old = age >= live.max_age;
        if asked || old || urgent || pending >= max as u64 {
            let now = CompactTime::at(Utc::now())
                .ok_or_else(|| "the clock is past year 9999: no lot closes".to_string())?;
            // By size alone, only full lots close; the others wait for their age.
            let everything = asked || old || urgent;
            let lots = match self
                .store
                .write(GroupWrite::CloseLots {
                    practitioner_id: None,
                    max_sheets: max,
                    now,
                    full_only: !everything,
                })
                .await
                .map_err(|e| e.to_string())?
            {
                GroupWritten::Closed(lots) => lots,
                other => return Err(format!("closing lots answered {other:?}")),
            };
            for l in &lots {
                tracing::info!(lot = %l.id, sheets = l.sheet_count, "lot closed");
                self.events.publish("lot.closed", serde_json::json!({ "lot_id": l.id, "sheets": l.sheet_count, "destination": l.destination }));
            }
            // Sheets left open (other groups) are looked at again soon.
            return Ok(Some(Duration::from_secs(1)));
        }
        Ok(Some((live.max_age - age).min(next_look)))
    }

    /// Signs the closed lots whose CPS may sign; returns when to look again for lots that wait
    /// for a remote CPS (its PIN verified there wakes nothing here).
    async fn sign(&self) -> Result<Option<Duration>, String> {
        let lots = self
            .store
            .read(|q| q.lots_to_sign(None))
            .await
            .map_err(|e| e.to_string())?;
        let mut again = None;
        for lot in lots {
            if self.remote.cps_of(lot.practitioner_id.as_str()).is_some() {
                again = Some(REMOTE_RETRY);
            }
            match self.sign_one(&lot).await {
                Ok(()) => {}
                Err(SignError::Waiting(why)) => {
                    tracing::info!(lot = %lot.id, reason = %why, "lot waits for its signature");
                }
                Err(SignError::Failed(why)) => {
                    // The card was there and was asked, but the signature did not come back (card
                    // removed mid-signature, card error): nothing was stored, the lot stays closed
                    // and is signed at a later turn. Say so to the practice software.
                    tracing::warn!(lot = %lot.id, reason = %why, "lot signature failed; the lot stays closed");
                    self.events.publish(
                        "lot.sign_failed",
                        serde_json::json!({ "lot_id": lot.id, "reason": why }),
                    );
                }
                Err(SignError::Other(e)) => return Err(e),
            }
        }
        Ok(again)
    }

    /// The lot's sheets, each with a fresh salt, and the DRE made with each (none for a sheet
    /// without one).
    async fn salted_entries(&self, lot: &LotRow) -> Result<LotEntries, SignError> {
        let id = lot.id.clone();
        let bodies = match self.store.read(move |q| q.lot_bodies(&id)).await {
            Ok(bodies) => bodies,
            // A damaged sheet is never signed into a lot: the lot stays closed, the sheet
            // is named in an alarm, and the other lots go on.
            Err(crate::store::StoreError::Queue(fse_queue::QueueError::Damaged(d))) => {
                self.damaged_once(&d);
                return Err(SignError::Waiting(format!(
                    "its {} {} is damaged ({})",
                    d.kind, d.id, d.reason
                )));
            }
            Err(e) => return Err(SignError::Other(e.to_string())),
        };
        // Salts from the thread's CSPRNG (ChaCha, seeded and reseeded by the OS): as
        // unpredictable as the OS's, without a system call per sheet.
        Ok({
            let mut rng = rand::thread_rng();
            bodies
                .into_iter()
                .map(|(der, dre)| {
                    let mut salt = [0u8; SALT_LEN];
                    rng.fill_bytes(&mut salt);
                    (LotEntry { salt, sheet: der }, dre)
                })
                .unzip()
        })
    }

    /// The entries a lot was first sent to a remote CPS with, or new ones kept for the
    /// passes after this one.
    async fn kept_entries(&self, lot: &LotRow) -> Result<LotEntries, SignError> {
        let kept = self
            .remote_entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(lot.id.as_str())
            .map(|k| k.0.clone());
        if let Some(kept) = kept {
            return Ok(kept);
        }
        let fresh = self.salted_entries(lot).await?;
        self.remote_entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lot.id.as_str().to_owned(), RemoteEntries(fresh.clone()));
        Ok(fresh)
    }

    /// Signs one closed lot with its practitioner's CPS and stores it signed, with its DRE lots
    /// and CMS form.
    async fn sign_one(&self, lot: &LotRow) -> Result<(), SignError> {
        // The practitioner's CPS here first; on another fsed when it is not here.
        let here = self.cards.snapshot().slots.iter().any(|s| {
            s.cps
                .as_ref()
                .is_some_and(|c| c.holder.national_id == lot.practitioner_id.as_str())
        });
        let remote = match here {
            true => None,
            false => self.remote.cps_of(lot.practitioner_id.as_str()),
        };
        let (entries, dres) = match &remote {
            Some(_) => self.kept_entries(lot).await?,
            None => self.salted_entries(lot).await?,
        };
        let root = merkle::root(&lot::leaves(&entries));
        let practitioner = lot.practitioner_id.clone();
        let header = LotHeader {
            lot_id: lot.id.as_str().to_owned(),
            number: lot.number,
            practitioner_id: lot.practitioner_id.as_str().to_owned(),
            destination: lot.destination.clone(),
            sheet_count: entries.len() as u64,
            merkle_root: root,
            closed_at: lot.closed_at.to_string(),
            cps_serial: String::new(),
            signer_key: [0; 32],
            attachments: self.header_refs(lot).await.map_err(SignError::Other)?,
        };
        let today = Utc::now().date_naive();
        let signed = match &remote {
            None => self.sign_here(practitioner, header, entries, today).await?,
            Some(card) => crate::remote::lots::sign(&self.remote, card, header, entries, today)
                .await
                .map_err(|e| match e {
                    crate::remote::lots::Refused::Waiting(why) => SignError::Waiting(why),
                    crate::remote::lots::Refused::Failed(why) => SignError::Failed(why),
                })?,
        };
        let (signed, header_der, certificate) = signed;
        let der = signed
            .to_der()
            .map_err(|e| SignError::Other(e.to_string()))?;
        let (dre_lots, cms) =
            encode_dres_and_cms(&signed, &dres, &header_der, certificate.as_deref())?;
        self.store
            .write(GroupWrite::LotSigned {
                lot_id: lot.id.clone(),
                signed_der: der,
                cms,
                dre_lots,
            })
            .await
            .map_err(|e| SignError::Other(e.to_string()))?;
        self.remote_entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(lot.id.as_str());
        tracing::info!(lot = %lot.id, sheets = lot.sheet_count, "lot signed");
        self.events.publish(
            "lot.signed",
            serde_json::json!({ "lot_id": lot.id, "sheets": lot.sheet_count }),
        );
        Ok(())
    }

    /// Sends signed lots in order, a window of them at a time (published together, then
    /// their confirms awaited); returns when to try again after a failure.
    async fn send(&self) -> Result<Option<Duration>, String> {
        let lots = self
            .store
            .read(|q| q.lots_to_send_checked())
            .await
            .map_err(|e| e.to_string())?;
        // A damaged lot is never published: it stays as it is, named in an alarm, and the
        // others go on.
        let lots: Vec<&LotRow> = lots
            .iter()
            .filter_map(|l| l.as_ref().map_err(|d| self.damaged_once(d)).ok())
            .filter(|l| l.signed_der.is_some())
            .collect();
        let (mut retry, mut broken) = (None, false);
        for window in lots.chunks(self.live.get().window.max(1)) {
            let results = self.publish(window).await;
            let mut sent = Vec::new();
            for (lot, result) in window.iter().zip(results) {
                match result {
                    Ok(()) => sent.push(*lot),
                    Err(e) => {
                        tracing::warn!(lot = %lot.id, error = %e, "lot not sent; it stays queued");
                        if e.unroutable {
                            self.unroutable_once(
                                lot.id.to_string(),
                                "lot.unroutable",
                                serde_json::json!({ "lot_id": lot.id, "destination": lot.destination, "reason": e.message }),
                            );
                        }
                        retry = Some(RETRY);
                        // A destination nobody listens to does not hold the others back.
                        broken |= !e.unroutable;
                    }
                }
            }
            // The window's lots confirmed, marked sent in one commit.
            let marks = sent
                .iter()
                .map(|l| GroupWrite::LotSent {
                    lot_id: l.id.clone(),
                })
                .collect();
            for (lot, marked) in sent.iter().zip(self.store.write_all(marks).await) {
                marked.map_err(|e| e.to_string())?;
                tracing::info!(lot = %lot.id, destination = %lot.destination, "lot sent");
                self.events.publish(
                    "lot.sent",
                    serde_json::json!({ "lot_id": lot.id, "destination": lot.destination, "sheets": lot.sheet_count }),
                );
            }
            if broken {
                break;
            }
        }
        Ok(self.send_dre_lots().await?.or(retry))
    }

    /// The alarm of a damaged stored row (a sheet not signed into its lot, a lot or DRE lot
    /// not sent): logged and published (`store.damaged`) once per run; the row is left as
    /// it is.
    fn damaged_once(&self, d: &fse_queue::DamagedRow) {
        let first = self
            .unroutable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("damaged {} {}", d.kind, d.id));
        if first {
            tracing::error!(kind = d.kind, id = %d.id, reason = %d.reason, "a stored row is damaged: it is not signed or sent; restore the database from a backup (`fsectl verify`)");
            self.events.publish(
                "store.damaged",
                serde_json::json!({ "kind": d.kind, "id": d.id, "reason": d.reason }),
            );
        }
    }

    /// The alarm of a lot (or DRE lot) `key` that no queue takes: logged and published once
    /// per run; the lot waits, nothing is lost.
    fn unroutable_once(&self, key: String, event: &str, fields: serde_json::Value) {
        let first = self
            .unroutable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        if first {
            tracing::error!(event, details = %fields, "no queue is bound for this destination: the lot waits, nothing is lost");
            self.events.publish(event, fields);
        }
    }

    /// Sends the DRE lots waiting, a window at a time, to their AMCs; returns when to try
    /// again after a failure. An AMC with no queue bound raises `dre_lot.unroutable` once.
    async fn send_dre_lots(&self) -> Result<Option<Duration>, String> {
        let waiting = self
            .store
            .read(|q| q.dre_lots_to_send_checked())
            .await
            .map_err(|e| e.to_string())?;
        let waiting: Vec<(LotId, String, Vec<u8>)> = waiting
            .into_iter()
            .filter_map(|r| r.map_err(|d| self.damaged_once(&d)).ok())
            .collect();
        for window in waiting.chunks(self.live.get().window.max(1)) {
            let batch: Vec<(&str, &str, &[u8])> = window
                .iter()
                .map(|(lot, amc, der)| (lot.as_str(), amc.as_str(), der.as_slice()))
                .collect();
            let results = self.transport.send_dre_lots(&batch).await;
            let mut failed = false;
            for ((lot, amc, _), result) in window.iter().zip(results) {
                match result {
                    Ok(()) => {
                        let (l, a) = (lot.clone(), amc.clone());
                        self.store
                            .call(move |q| q.mark_dre_lot_sent(&l, &a))
                            .await
                            .map_err(|e| e.to_string())?;
                        tracing::info!(lot = %lot, amc = %amc, "DRE lot sent");
                        self.events.publish(
                            "dre_lot.sent",
                            serde_json::json!({ "lot_id": lot, "amc": amc }),
                        );
                    }
                    Err(e) => {
                        failed = true;
                        tracing::warn!(lot = %lot, amc = %amc, error = %e, "DRE lot not sent; it stays queued");
                        if e.unroutable {
                            self.unroutable_once(
                                format!("{lot}/{amc}"),
                                "dre_lot.unroutable",
                                serde_json::json!({ "lot_id": lot, "amc": amc, "reason": e.message }),
                            );
                        }
                    }
                }
            }
            if failed {
                return Ok(Some(RETRY));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> chrono::NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 16)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn the_daily_closing_comes_once_a_day_at_its_time() {
        let six = chrono::NaiveTime::from_hms_opt(18, 0, 0);
        assert_eq!(daily_close(None, None, at(19, 0)), (false, None));
        let (due, wait) = daily_close(six, None, at(17, 30));
        assert!(!due);
        assert_eq!(wait, Some(Duration::from_secs(30 * 60)));
        let (due, wait) = daily_close(six, None, at(18, 0));
        assert!(due);
        assert_eq!(wait, Some(Duration::from_secs(24 * 3600)));
        let today = at(18, 0).date();
        let (due, _) = daily_close(six, Some(today), at(23, 0));
        assert!(!due, "already done today");
        let (due, _) = daily_close(six, today.pred_opt(), at(18, 5));
        assert!(due, "done yesterday, due again today");
    }
}
