//! The paper duplicate: the feuille de soins a practice prints and posts when a sheet cannot go
//! electronically in time, or was made in degraded mode. `render` lays a stored sheet out as
//! a PDF (pure); this module writes it durably in `[paper] dir` (a temporary file, synced,
//! renamed, mode 0640; one file a sheet, `<practitioner id>-<sheet number>.pdf`, a later
//! duplicate replacing it) and announces it (`sheet.paper_duplicate`). `fse.duplicate` asks
//! for one; with `[paper] auto`, fsed makes one by itself when a degraded-mode sheet is
//! committed and when an unsent sheet reaches its sending deadline day (`scan`, at start-up and
//! every `check_secs`). A duplicate that cannot be written never touches its sheet: it is
//! logged, kept for the doctor's `paper` check, and tried again at the next scan.

pub mod config;
pub mod render;
mod scan;
pub mod text;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use fse_queue::{SheetId, SheetRow};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

pub use config::PaperSection;
pub use render::{render, Duplicate};
pub use scan::{run, task};

use crate::events::Bus;
use crate::store::{Store, StoreError};

/// Why a duplicate was made, as its event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Asked for (`fse.duplicate`).
    Asked,
    /// A degraded-mode sheet was committed.
    Degraded,
    /// The sheet is still unsent on (or near) its sending deadline.
    Deadline,
}

/// A duplicate written: `fse.duplicate`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    /// The sheet's id.
    pub id: i64,
    /// The sheet's number.
    pub number: u64,
    /// Its lot, once in one.
    pub lot_id: Option<String>,
    /// The PDF file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// Why a duplicate was not written.
#[derive(Debug, thiserror::Error)]
pub enum PaperError {
    /// No such sheet.
    #[error("no sheet {0}")]
    NotFound(i64),
    /// The queue failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The stored sheet does not decode, or has a practitioner id unfit for a file name.
    #[error("sheet {id}: {reason}")]
    Sheet {
        /// The sheet.
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// A duplicate that could not be written, kept until one for that sheet is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The sheet.
    pub sheet_id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Why it failed.
    pub error: String,
    /// What asked for it.
    pub trigger: Trigger,
    /// The reason it was to print (for the next try).
    #[serde(skip)]
    pub reason: String,
}

/// The paper duplicates' writer: its folder, its settings and the failures not yet made up for.
#[derive(Debug)]
pub struct Paper {
    dir: PathBuf,
    auto: bool,
    days_before: u32,
    check_every: Duration,
    failures: Mutex<BTreeMap<i64, Failure>>,
    /// One write at a time: two duplicates of one sheet would share a temporary file.
    writing: tokio::sync::Mutex<()>,
}

impl Paper {
    /// The writer for `section`, writing in `dir` (see [`PaperSection::dir`]).
    pub fn new(section: &PaperSection, dir: PathBuf) -> Paper {
        Paper {
            dir,
            auto: section.auto,
            days_before: section.days_before,
            check_every: Duration::from_secs(section.check_secs.max(1)),
            failures: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// The folder the duplicates go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether fsed makes duplicates by itself.
    pub fn auto(&self) -> bool {
        self.auto
    }

    /// The duplicates that could not be written and are still missing, by sheet.
    pub fn failures(&self) -> Vec<Failure> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Failure>> {
        // Poisoned only by a panic elsewhere; the map is a plain value, still whole.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file of `row`'s duplicate.
    fn file_of(&self, row: &SheetRow) -> Result<PathBuf, PaperError> {
        let practitioner = row.practitioner_id.to_string();
        let fit = !practitioner.is_empty()
            && practitioner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !fit {
            return Err(PaperError::Sheet {
                id: row.id.get(),
                reason: format!("practitioner id {practitioner:?} cannot name a file"),
            });
        }
        Ok(self.dir.join(format!("{practitioner}-{}.pdf", row.number)))
    }

    /// Writes the duplicate of sheet `id`, made for `reason`, and announces it on `events`.
    /// With `only_if_missing`, a sheet whose file is there already is left alone (`None`).
    pub async fn duplicate(
        &self,
        store: &Store,
        events: &Bus,
        id: i64,
        reason: &str,
        trigger: Trigger,
        only_if_missing: bool,
    ) -> Result<Option<Written>, PaperError> {
        let row = store
            .read(move |q| q.get_sheet(SheetId(id)))
            .await?
            .ok_or(PaperError::NotFound(id))?;
        let path = self.file_of(&row)?;
        // Held from the look for the file to its rename: an automatic duplicate never lands
        // over one asked for meanwhile.
        let one = self.writing.lock().await;
        if only_if_missing && path.exists() {
            return Ok(None);
        }
        let sheet =
            fse_formats::fse::CareSheet::from_der(&row.der).map_err(|e| PaperError::Sheet {
                id,
                reason: format!("stored sheet: {e}"),
            })?;
        let lot_id = row.lot_id.as_ref().map(ToString::to_string);
        let pdf = render(&Duplicate {
            sheet: &sheet,
            lot_id: lot_id.as_deref(),
            reason,
        });
        let sha256 = hex::encode(Sha256::digest(&pdf));
        let size = pdf.len() as u64;
        let (dir, file) = (self.dir.clone(), path.clone());
        tokio::task::spawn_blocking(move || write_durably(&dir, &file, &pdf))
            .await
            .map_err(|e| PaperError::Write {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        drop(one);
        self.lock().remove(&id);
        let written = Written {
            id,
            number: row.number,
            lot_id,
            path,
            size,
            sha256,
        };
        events.publish(
            "sheet.paper_duplicate",
            json!({ "sheet_id": id, "number": written.number, "lot_id": written.lot_id,
                    "path": written.path, "sha256": written.sha256, "trigger": trigger }),
        );
        tracing::info!(sheet = id, path = %written.path.display(), ?trigger, "paper duplicate written");
        Ok(Some(written))
    }

    /// [`Paper::duplicate`] made by fsed itself: a failure is logged and kept for the doctor
    /// (and the next scan), never returned.
    pub async fn automatic(
        &self,
        store: &Store,
        events: &Bus,
        id: i64,
        reason: &str,
        trigger: Trigger,
    ) {
        if let Err(e) = self
            .duplicate(store, events, id, reason, trigger, true)
            .await
        {
            if matches!(e, PaperError::NotFound(_)) {
                // Gone meanwhile (purged): nothing left to print.
                return;
            }
            tracing::error!(sheet = id, error = %e, "paper duplicate not written");
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            self.lock().insert(
                id,
                Failure {
                    sheet_id: id,
                    at,
                    error: e.to_string(),
                    trigger,
                    reason: reason.to_string(),
                },
            );
        }
    }
}

/// The reason printed on an automatic duplicate of a degraded-mode sheet.
pub const DEGRADED_REASON: &str =
    "feuille en mode dégradé : le duplicata papier accompagne la feuille électronique";

/// Writes `bytes` to `file` in `dir` durably: the folder made (0750) if need be, a temporary
/// file (0640) written and synced, renamed into place, the folder synced.
fn write_durably(dir: &Path, file: &Path, bytes: &[u8]) -> Result<(), PaperError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PaperError::Write { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(failed(dir))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)
        .map_err(failed(&tmp))?;
    // The umask may have taken bits away; the mode is the one asked for.
    f.set_permissions(std::fs::Permissions::from_mode(0o640))
        .map_err(failed(&tmp))?;
    f.write_all(bytes).map_err(failed(&tmp))?;
    f.sync_all().map_err(failed(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, file).map_err(failed(file))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed(dir))
}

#[cfg(test)]
mod tests;
