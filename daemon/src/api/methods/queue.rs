//! `queue.*`: the counts per state, the alarms (deadlines, missing ARLs) and the online
//! backup of the database.

use serde_json::{json, Value};

use crate::api::params::{no_params, params};
use crate::context::Context;
use crate::error::ApiError;

use super::to_value;

/// `queue.alarms`: the sheets near their deadline, then the lots without an ARL.
pub(in crate::api) async fn alarms(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    no_params(p)?;
    let live = ctx.live.get();
    let cutoff = crate::batcher::alarm_cutoff(live.deadline_alarm_days);
    let sent_before = fse_queue::stamp_ago(live.arl_timeout);
    let (sheets, lots) = ctx
        .store
        .call(move |q| {
            Ok((
                q.deadline_alarms(&cutoff)?,
                q.arl_alarms(sent_before, live.arl_max_resends)?,
            ))
        })
        .await?;
    to_value(alarm_list(sheets, lots))
}

/// `queue.stats`: the counts per state and the resends.
pub(in crate::api) async fn stats(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    no_params(p)?;
    let live = ctx.live.get();
    let sent_before = fse_queue::stamp_ago(live.arl_timeout);
    let (stats, resends) = ctx
        .store
        .call(move |q| {
            Ok((
                q.stats()?,
                q.resend_stats(sent_before, live.arl_max_resends)?,
            ))
        })
        .await?;
    to_value(QueueStats { stats, resends })
}

/// `queue.backup`: the database copied online to `path` (absolute, in an existing directory,
/// not one of the database's own files), checked, mode 0600, put in place atomically.
pub(in crate::api) async fn backup(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct BackupParams {
        path: String,
    }
    let BackupParams { path } = params(p)?;
    let dest = std::path::PathBuf::from(&path);
    if !dest.is_absolute() || dest.file_name().is_none() {
        return Err(ApiError::invalid(
            "path",
            "path: an absolute file path is needed",
        ));
    }
    let dir = dest.parent().unwrap_or(std::path::Path::new("/"));
    if !dir.is_dir() {
        return Err(ApiError::invalid(
            "path",
            format!("path: the directory {} does not exist", dir.display()),
        ));
    }
    let db = ctx.store.path();
    let own = |f: &std::path::Path| {
        let [wal, shm] = crate::mark::companions(db);
        let mut lock = db.as_os_str().to_os_string();
        lock.push(".lock");
        [
            db.to_path_buf(),
            wal,
            shm,
            crate::mark::mark_path(db),
            lock.into(),
        ]
        .iter()
        .any(|o| same_file(o, f))
    };
    if own(&dest) {
        return Err(ApiError::invalid(
            "path",
            "path: one of the database's own files; choose another",
        ));
    }
    let made = ctx.store.backup_to(dest).await?;
    Ok(json!({
        "path": path,
        "bytes": made.bytes,
        "integrity": "ok",
        "sheets": made.stats.sheets,
        "lots": made.stats.lots,
        "last_event": made.high_water.last_event,
        "practitioners": made.high_water.practitioners.iter().map(|(pid, c)| json!({
            "practitioner_id": pid,
            "sheet_numbers_reserved": c.next_sheet.saturating_sub(1),
            "last_sheet": c.last_sheet,
            "lots_made": c.next_lot.saturating_sub(1),
        })).collect::<Vec<_>>(),
    }))
}

/// Whether `a` and `b` name the same file: the same path once their directories are resolved.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let resolved = |p: &std::path::Path| {
        let dir = p.parent().and_then(|d| std::fs::canonicalize(d).ok());
        dir.zip(p.file_name()).map(|(d, n)| d.join(n))
    };
    a == b || matches!((resolved(a), resolved(b)), (Some(x), Some(y)) if x == y)
}

/// `queue.stats`: the counts per state and the resends of lots whose ARL did not come.
#[derive(serde::Serialize)]
struct QueueStats {
    #[serde(flatten)]
    stats: fse_queue::Stats,
    resends: fse_queue::ResendStats,
}

/// One alarm of `queue.alarms`, told apart by its `kind`.
#[derive(serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Alarm {
    /// A sheet not sent near or past its sending deadline.
    Deadline(fse_queue::DeadlineAlarm),
    /// A lot sent whose ARL has not come in time.
    ArlMissing(fse_queue::ArlAlarm),
}

/// The alarms of `queue.alarms`: the sheets near their deadline, then the lots without an ARL.
fn alarm_list(sheets: Vec<fse_queue::DeadlineAlarm>, lots: Vec<fse_queue::ArlAlarm>) -> Vec<Alarm> {
    sheets
        .into_iter()
        .map(Alarm::Deadline)
        .chain(lots.into_iter().map(Alarm::ArlMissing))
        .collect()
}
