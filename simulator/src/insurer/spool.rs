//! The spool transport: lots read from the sender's outbox directory, ARLs and payment
//! returns written into its inbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::ack::ReturnContent;
use fse_formats::wire;
use tokio::sync::watch;

use super::{sign_return, stopped, Insurer, InsurerError, UNKNOWN_LOT_ID};

/// Spool polling period.
const SPOOL_POLL: Duration = Duration::from_millis(100);

/// Writes `bytes` to `dir/name` atomically and durably (temporary name, fsync, rename, fsync dir).
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// What one pass over the spool outbox did.
#[derive(Debug, Default)]
pub struct SpoolPass {
    /// Lot files answered (ARL written, lot file removed).
    pub answered: usize,
    /// Lot files left in place, with why (unreadable, ARL not written, not removable).
    pub failed: Vec<(PathBuf, String)>,
}

/// One pass over the spool outbox: answers every `*.lot` file into the inbox
/// as `<file stem>.arl` (and `<file stem>.pay` with payments on), then removes
/// it; takes every `*.dre` file (DRE lots) as their AMC would, and removes it.
///
/// Only an unreadable outbox is an error; a lot file that cannot be read,
/// answered or removed is left in place, reported in [`SpoolPass::failed`],
/// and tried again at the next pass. Hidden files (the sender's temporary
/// names) are not touched.
pub fn spool_pass(
    insurer: &mut Insurer,
    outbox: &Path,
    inbox: &Path,
) -> Result<SpoolPass, InsurerError> {
    let mut lots: Vec<PathBuf> = std::fs::read_dir(outbox)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| {
                x == wire::SPOOL_LOT_SUFFIX
                    || x == wire::SPOOL_DRE_LOT_SUFFIX
                    || x == wire::SPOOL_ATTACHMENT_LOT_SUFFIX
            }) && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.is_file()
        })
        .collect();
    lots.sort();
    let mut pass = SpoolPass::default();
    for path in lots {
        let result = if path
            .extension()
            .is_some_and(|x| x == wire::SPOOL_DRE_LOT_SUFFIX)
        {
            take_dre_file(insurer, &path)
        } else {
            answer_file(insurer, &path, inbox)
        };
        match result {
            Ok(()) => pass.answered += 1,
            Err(e) => pass.failed.push((path, e)),
        }
    }
    Ok(pass)
}

/// Takes one DRE lot file of the outbox, as the AMC it is addressed to: verified, counted,
/// removed (no reply).
fn take_dre_file(insurer: &mut Insurer, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    match insurer.receive_dre(&bytes) {
        Ok(n) => tracing::info!(file = %path.display(), dres = n, "spool DRE lot accepted"),
        Err((code, why)) => {
            tracing::warn!(file = %path.display(), %code, reason = %why, "spool DRE lot refused")
        }
    }
    std::fs::remove_file(path).map_err(|e| format!("taken but not removed: {e}"))
}

/// Answers one lot file of the outbox.
fn answer_file(insurer: &mut Insurer, path: &Path, inbox: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    let mut arl = if path
        .extension()
        .is_some_and(|x| x == wire::SPOOL_ATTACHMENT_LOT_SUFFIX)
    {
        insurer.receive_attachments(&bytes)
    } else {
        insurer.receive(&bytes)
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if arl.lot_id == UNKNOWN_LOT_ID {
        arl.lot_id = stem.clone();
    }
    let der = sign_return(ReturnContent::Arl(arl.clone()))?;
    write_atomic(inbox, &format!("{stem}.{}", wire::SPOOL_ARL_SUFFIX), &der)
        .map_err(|e| format!("ARL not written: {e}"))?;
    if let Some(p) = insurer.payment_return(&arl.lot_id) {
        let der = sign_return(ReturnContent::Payment(p))?;
        write_atomic(
            inbox,
            &format!("{stem}.{}", wire::SPOOL_PAYMENT_SUFFIX),
            &der,
        )
        .map_err(|e| format!("payment return not written: {e}"))?;
    }
    tracing::info!(lot = %arl.lot_id, status = ?arl.status, "spool lot answered");
    std::fs::remove_file(path).map_err(|e| format!("answered but not removed: {e}"))
}

/// Serves a spool until `stop` turns true: polls `outbox` every 100 ms for
/// lot files and answers them into `inbox` (see [`spool_pass`]).
///
/// Fails only when the directories cannot be created; later file-system
/// errors are logged (once each) and retried.
pub async fn run_spool(
    outbox: PathBuf,
    inbox: PathBuf,
    insurer: Arc<Mutex<Insurer>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), InsurerError> {
    std::fs::create_dir_all(&outbox)?;
    std::fs::create_dir_all(&inbox)?;
    let mut reported: HashMap<PathBuf, String> = HashMap::new();
    loop {
        let (o, i, ins) = (outbox.clone(), inbox.clone(), Arc::clone(&insurer));
        let pass = tokio::task::spawn_blocking(move || {
            let mut guard = ins.lock().unwrap_or_else(|p| p.into_inner());
            spool_pass(&mut guard, &o, &i)
        })
        .await
        .map_err(|e| InsurerError::Io(std::io::Error::other(e.to_string())))
        .and_then(|r| r);
        let failures: HashMap<PathBuf, String> = match pass {
            Ok(pass) => pass.failed.into_iter().collect(),
            Err(e) => HashMap::from([(outbox.clone(), e.to_string())]),
        };
        for (path, why) in &failures {
            if reported.get(path) != Some(why) {
                tracing::warn!(path = %path.display(), reason = %why, "spool: left in place, retrying");
            }
        }
        reported = failures;
        tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            _ = tokio::time::sleep(SPOOL_POLL) => {}
        }
    }
}
