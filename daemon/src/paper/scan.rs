//! The automatic duplicates' look at the queue, at start-up and every `[paper] check_secs`:
//! each unsent sheet (accepted, in a lot, signed, or rejected and not sent again) whose sending
//! deadline is today, or within `[paper] days_before` days, or past, gets its duplicate once
//! (a file already there is left alone); so does each unsent degraded-mode sheet whose
//! duplicate is missing (written at its creation, but lost to a crash or a failed write); and
//! each duplicate that failed is tried again.

use std::sync::Arc;

use chrono::NaiveDate;
use fse_queue::{SheetId, SheetState};

use super::{Paper, Trigger, DEGRADED_REASON};
use crate::events::Bus;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};

/// The states of a sheet not (successfully) sent.
const UNSENT: [SheetState; 4] = [
    SheetState::Accepted,
    SheetState::InLot,
    SheetState::Signed,
    SheetState::Rejected,
];

/// Rows read at a time.
const PAGE: usize = 200;

/// The reason printed on a duplicate made at the deadline `deadline` (`YYYYMMDD`).
pub fn deadline_reason(deadline: &str) -> String {
    format!(
        "feuille non envoyée, date limite d'envoi le {}",
        super::text::date(deadline)
    )
}

/// [`run`] on the service's writer, queue and events.
pub fn task(
    ctx: &crate::context::Context,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    run(
        Arc::clone(&ctx.paper),
        ctx.store.clone(),
        ctx.events.clone(),
        shutdown,
    )
}

/// Looks now, then every `check_secs`, until shutdown; does nothing without `[paper] auto`.
pub async fn run(paper: Arc<Paper>, store: Store, events: Bus, mut shutdown: Shutdown) {
    if !paper.auto() {
        return;
    }
    loop {
        let today = chrono::Utc::now().date_naive();
        match pass(&paper, &store, &events, today).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sheets = n, "paper duplicates looked after"),
            Err(e) => tracing::warn!(error = %e, "paper duplicates: the queue could not be read"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(paper.check_every) => {}
        }
    }
}

/// One look, as on `today`: the failures tried again, then the unsent sheets. Returns how many
/// sheets it tried to write a duplicate for.
pub async fn pass(
    paper: &Paper,
    store: &Store,
    events: &Bus,
    today: NaiveDate,
) -> Result<usize, StoreError> {
    let mut tried = 0;
    for failed in paper.failures() {
        paper
            .automatic(
                store,
                events,
                failed.sheet_id,
                &failed.reason,
                failed.trigger,
            )
            .await;
        tried += 1;
    }
    let last_day = (today + chrono::Duration::days(i64::from(paper.days_before)))
        .format("%Y%m%d")
        .to_string();
    for state in UNSENT {
        let mut after = 0i64;
        loop {
            let rows = store
                .read(move |q| q.list_sheets_checked(Some(state), PAGE, SheetId(after)))
                .await?;
            let Some(last) = rows.last() else { break };
            after = match last {
                Ok(row) => row.id.get(),
                // A damaged row keeps its place; its id says where the next page starts.
                Err(d) => match d.id.parse() {
                    Ok(id) => id,
                    Err(_) => break,
                },
            };
            for row in rows.iter().flatten() {
                let Ok(sheet) = fse_formats::fse::CareSheet::from_der(&row.der) else {
                    continue;
                };
                let (reason, trigger) = if sheet.deadline <= last_day {
                    (deadline_reason(&sheet.deadline), Trigger::Deadline)
                } else if sheet.mode == fse_formats::fse::Mode::Degraded {
                    (DEGRADED_REASON.to_string(), Trigger::Degraded)
                } else {
                    continue;
                };
                let file = paper.file_of(row).ok();
                if file.is_some_and(|f| f.exists()) {
                    continue;
                }
                paper
                    .automatic(store, events, row.id.get(), &reason, trigger)
                    .await;
                tried += 1;
            }
            if rows.len() < PAGE {
                break;
            }
        }
    }
    Ok(tried)
}
