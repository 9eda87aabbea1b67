//! The durable queue (`fse_queue`, synchronous SQLite) behind an async
//! handle: every call runs on tokio's blocking pool, one writer at a time.
//! Two paths are shaped for many concurrent clients: sheet inserts go to a
//! committer thread that stores every insert waiting at that moment in one
//! transaction (group commit: one fsync for the lot of them), together with
//! the lots' changes of state waiting then ([`Store::write`]), and sheet
//! numbers are reserved from the database in blocks and handed out from
//! memory (a block cut short by a restart leaves a gap, never a reuse).
//! Reads on the path of every sheet ([`Store::read`]) have a connection of
//! their own: under WAL they see the last commit without waiting for the
//! one in progress (and its fsync). A checkpointer thread, on a connection
//! of its own too, copies the WAL into the database file off the
//! committer's path. The participation history each sheet is priced on is
//! kept in memory per beneficiary, per date and professional
//! ([`Store::participation_history`]), filled from the file and brought up to
//! date by the committer after each commit.

mod committer;
mod history;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use fse_queue::{
    GroupWrite, GroupWritten, Inserted, NewSheet, PfRecord, PractitionerId, Queue, QueueError,
};
use tokio::sync::oneshot;

use crate::mark::Keeper;
use committer::{checkpoints, committer, Idle, Op};
use history::{lines_in, Histories, History};

/// How many sheet numbers one reservation takes.
pub const NUMBER_BLOCK: u64 = 128;

/// How long a group commit waits for more inserts when several are already waiting.
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// The most inserts one group commit carries.
pub const MAX_GROUP: usize = 512;

/// How often the checkpointer thread copies the WAL into the database file.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// WAL pages at which the committer checkpoints by itself, should the checkpointer fall behind
/// (40 MiB of 4 KiB pages).
pub const CHECKPOINT_BACKSTOP: u32 = 10_000;

/// The most beneficiaries whose participation history is kept in memory; past that, the
/// history of a new one is read from the file at each sheet.
pub const HISTORY_CACHE_MAX: usize = 65_536;

/// Shared handle to the queue.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Queue>>,
    reader: Arc<Mutex<Queue>>,
    quick_reader: Arc<Mutex<Queue>>,
    ops: mpsc::Sender<Op>,
    numbers: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    reserving: Arc<tokio::sync::Mutex<()>>,
    histories: Arc<Mutex<Histories>>,
    mark: Arc<Keeper>,
    path: Arc<std::path::PathBuf>,
}

/// What a backup holds.
#[derive(Debug, Clone)]
pub struct BackupMade {
    /// The copy's size.
    pub bytes: u64,
    /// Its sheets and lots per state.
    pub stats: fse_queue::Stats,
    /// How far it goes.
    pub high_water: fse_queue::HighWater,
}

/// A store call that could not run.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The queue refused.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The blocking task failed (a bug: it panicked).
    #[error("store task failed: {0}")]
    Task(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a previous call panicked mid-way; SQLite rolled its transaction
    // back, so the connection (or the number cache, updated only after a commit) is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The page cache of each reading connection, KiB: in WAL mode SQLite empties it whenever the
/// writer has committed since the connection's last read, so under load it holds little more
/// than one read's pages; idle, a smaller one keeps the daemon small.
const READER_CACHE_KIB: u32 = 4096;

/// The checkpointer's page cache, KiB: a checkpoint copies WAL frames without the cache; only
/// the high-water mark's few pages are read through it.
const CHECKPOINTER_CACHE_KIB: u32 = 256;

/// Another connection to the queue's file with a page cache of `kib` KiB.
fn reading_connection(queue: &Queue, kib: u32) -> Result<Queue, QueueError> {
    let connection = queue.another_connection()?;
    connection.set_cache_kib(kib)?;
    Ok(connection)
}

impl Store {
    /// Opens (and checks) the database and starts the committer thread. The database file
    /// is made mode 0600 before SQLite opens it (its WAL and shared-memory files take its
    /// mode), and its high-water mark ([`crate::mark`]) is raised to what it holds.
    pub fn open(path: &Path) -> Result<Store, QueueError> {
        let private = |e: std::io::Error| QueueError::Open {
            path: path.to_path_buf(),
            detail: fse_queue::Detail::IoAt {
                step: "cannot make the database private (mode 0600)".into(),
                source: e,
            },
        };
        crate::mark::make_private(path).map_err(private)?;
        let queue = Queue::open(path)?;
        crate::mark::make_private(path).map_err(private)?;
        let mark = Arc::new(Keeper::load(path));
        mark.raise(&queue, false);
        // The file is checked and migrated: the reading connections need neither again.
        let reader = Arc::new(Mutex::new(reading_connection(&queue, READER_CACHE_KIB)?));
        let quick_reader = Arc::new(Mutex::new(reading_connection(&queue, READER_CACHE_KIB)?));
        // The WAL is copied into the database file by a thread of its own, off the committer's
        // path (where SQLite would do it, at the commit that fills 1,000 pages, while the
        // sheets of that commit wait); the committer still does it past the backstop.
        let checkpointer = reading_connection(&queue, CHECKPOINTER_CACHE_KIB)?;
        queue.set_auto_checkpoint(CHECKPOINT_BACKSTOP)?;
        let inner = Arc::new(Mutex::new(queue));
        let (tx, rx) = mpsc::channel::<Op>();
        let queue = Arc::clone(&inner);
        let histories = Arc::new(Mutex::new(Histories::default()));
        let committed = Arc::clone(&histories);
        let marked = Arc::clone(&mark);
        let commits = Arc::new(AtomicU64::new(0));
        let idle = Idle {
            commits: Arc::clone(&commits),
            readers: vec![Arc::downgrade(&reader), Arc::downgrade(&quick_reader)],
        };
        std::thread::Builder::new()
            .name("fsed-commit".into())
            .spawn(move || committer(&queue, &rx, &committed, &marked, &commits))
            .map_err(|e| QueueError::Data(format!("cannot start the committer thread: {e}")))?;
        let alive = Arc::downgrade(&inner);
        let marked = Arc::clone(&mark);
        std::thread::Builder::new()
            .name("fsed-checkpoint".into())
            .spawn(move || checkpoints(&checkpointer, &alive, &marked, &idle))
            .map_err(|e| QueueError::Data(format!("cannot start the checkpointer thread: {e}")))?;
        Ok(Store {
            inner,
            reader,
            quick_reader,
            ops: tx,
            numbers: Arc::new(Mutex::new(HashMap::new())),
            reserving: Arc::new(tokio::sync::Mutex::new(())),
            histories,
            mark,
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The orderly stop's last word, once nothing writes any more: the whole WAL copied into
    /// the database file and emptied (`wal_checkpoint(TRUNCATE)`), so that the file alone
    /// holds every commit, and the high-water mark written as the database ends.
    pub async fn close(&self) -> Result<(), StoreError> {
        let mark = Arc::clone(&self.mark);
        self.call(move |q| {
            let done = q.checkpoint_truncate();
            mark.raise(q, false);
            done
        })
        .await
    }

    /// Copies the database, as it is at the call, to `dest` on a connection of its own (the
    /// commits go on meanwhile): into a new file beside it (mode 0600 whatever the umask),
    /// checked (`PRAGMA integrity_check`, an fsed database) and synced, then renamed to `dest`
    /// (replacing a file there) and the directory synced. Returns what the copy holds.
    pub async fn backup_to(&self, dest: std::path::PathBuf) -> Result<BackupMade, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let reader = Arc::clone(&self.reader);
        let made = tokio::task::spawn_blocking(move || -> Result<BackupMade, QueueError> {
            // A connection of its own: the copy's long read holds no lock other calls wait on.
            let source = lock(&reader).another_connection()?;
            let io = |what: &str, e: std::io::Error| QueueError::Open {
                path: dest.clone(),
                detail: fse_queue::Detail::IoAt {
                    step: what.into(),
                    source: e,
                },
            };
            let mut name = dest.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".tmp-{}", std::process::id()));
            let tmp = dest.with_file_name(name);
            let _ = std::fs::remove_file(&tmp);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(crate::mark::PRIVATE_FILE)
                .open(&tmp)
                .map_err(|e| io("cannot create the copy", e))?;
            let copied = source.backup_into(&tmp).and_then(|held| {
                std::fs::rename(&tmp, &dest).map_err(|e| io("cannot rename the copy", e))?;
                crate::mark::sync_dir(&dest).map_err(|e| io("cannot sync the directory", e))?;
                Ok(held)
            });
            let (high_water, stats) = match copied {
                Ok(held) => held,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
            Ok(BackupMade {
                bytes,
                stats,
                high_water,
            })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(made)
    }

    /// The participation forfaitaire withheld from `beneficiary` on care dates `from` to
    /// `until` (`YYYYMMDD`, inclusive), summed per date and professional in date order, as
    /// [`Queue::participation_history`] reads it: from memory when this beneficiary's history
    /// is there (see [`Histories`]), else from the file (every date from `from` on, kept for
    /// the next sheets while nothing changed the participation meanwhile).
    pub async fn participation_history(
        &self,
        beneficiary: &str,
        from: &str,
        until: &str,
    ) -> Result<Vec<PfRecord>, StoreError> {
        let generation = {
            let cache = lock(&self.histories);
            if let Some(h) = cache.by_beneficiary.get(beneficiary) {
                return Ok(lines_in(h, from, until));
            }
            cache.generation
        };
        let (b, f) = (beneficiary.to_string(), from.to_string());
        let read = self
            .read_now(move |q| q.participation_history(&b, &f, "99991231"))
            .await?;
        let mut history = History::new();
        for r in read {
            history
                .entry(r.care_date)
                .or_default()
                .push((r.professional, r.acts, r.cents));
        }
        let answer = lines_in(&history, from, until);
        let mut cache = lock(&self.histories);
        if cache.generation == generation && cache.by_beneficiary.len() < HISTORY_CACHE_MAX {
            cache
                .by_beneficiary
                .insert(beneficiary.to_string(), history);
        }
        Ok(answer)
    }

    /// Drops `beneficiary`'s participation history from memory: the next sheet reads it from
    /// the file (a sheet priced on it was refused by the caps).
    pub fn forget_history(&self, beneficiary: &str) {
        let mut cache = lock(&self.histories);
        cache.generation += 1;
        cache.by_beneficiary.remove(beneficiary);
    }

    /// Drops every participation history from memory (a sheet was cancelled: what it withheld
    /// no longer counts).
    pub fn forget_histories(&self) {
        let mut cache = lock(&self.histories);
        cache.generation += 1;
        cache.by_beneficiary.clear();
    }

    /// Runs `f` with the queue on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Queue) -> Result<T, QueueError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut lock(&inner)))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(StoreError::from)
    }

    /// Runs the read-only `f` on the reading connection: it sees every committed change and
    /// does not wait for a write in progress.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Queue) -> Result<T, QueueError> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || f(&lock(&reader)))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(StoreError::from)
    }

    /// Runs the short read-only `f` (a few index lookups) at once on the caller's thread, on
    /// a reading connection of its own, sparing the hand-off to the blocking pool and back;
    /// when another caller holds that connection, `f` goes the way of [`Store::read`]
    /// instead, so a runtime thread never waits for a lock here.
    pub async fn read_now<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Queue) -> Result<T, QueueError> + Send + 'static,
    {
        let f = {
            let reader = match self.quick_reader.try_lock() {
                Ok(reader) => Some(reader),
                // Poisoned: see `lock`.
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            match reader {
                Some(reader) => return f(&reader).map_err(StoreError::from),
                None => f,
            }
        };
        self.read(f).await
    }

    /// Stores a sheet, durably, sharing the commit with the other inserts waiting.
    pub async fn insert_sheet(&self, new: NewSheet) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(Op::Insert(Box::new(new), reply))
            .map_err(|_| StoreError::Task("the committer thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Task("the committer thread dropped an insert".into()))?
            .map_err(StoreError::from)
    }

    /// Writes a lot's change of state in the next group commit, with the sheets being stored
    /// at that moment: no commit (and no fsync) of its own, and no wait for the writing
    /// connection while the committer holds it.
    pub async fn write(&self, write: GroupWrite) -> Result<GroupWritten, StoreError> {
        self.write_all(vec![write])
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::Task("a write without an answer".into())))
    }

    /// [`Store::write`] for several writes, in order, sent together so that they share a
    /// commit.
    pub async fn write_all(
        &self,
        writes: Vec<GroupWrite>,
    ) -> Vec<Result<GroupWritten, StoreError>> {
        let answers: Vec<_> = writes
            .into_iter()
            .map(|w| {
                let (reply, answer) = oneshot::channel();
                self.ops
                    .send(Op::Write(Box::new(w), reply))
                    .map(|()| answer)
                    .map_err(|_| StoreError::Task("the committer thread stopped".into()))
            })
            .collect();
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(match answer {
                Ok(answer) => answer
                    .await
                    .map_err(|_| StoreError::Task("the committer thread dropped a write".into()))
                    .and_then(|r| r.map_err(StoreError::from)),
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Answers once the committer thread has taken this request and committed whatever came
    /// with it: the committer is alive and its commits complete (the watchdog's health check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(Op::Ping(reply))
            .map_err(|_| StoreError::Task("the committer thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Task("the committer thread dropped a ping".into()))
    }

    /// The next sheet number of a practitioner: from the block reserved in memory, or from a
    /// new block of [`NUMBER_BLOCK`] reserved by the committer, in the commit of the sheets
    /// being stored at that moment (no commit of its own).
    pub async fn next_sheet_number(
        &self,
        practitioner_id: &PractitionerId,
    ) -> Result<u64, StoreError> {
        let take = |numbers: &Mutex<HashMap<String, (u64, u64)>>| {
            let mut cache = lock(numbers);
            let (next, end) = cache.get_mut(practitioner_id.as_str())?;
            (*next < *end).then(|| {
                *next += 1;
                *next - 1
            })
        };
        if let Some(n) = take(&self.numbers) {
            return Ok(n);
        }
        // One reservation at a time; who waited finds the new block.
        let _one = self.reserving.lock().await;
        if let Some(n) = take(&self.numbers) {
            return Ok(n);
        }
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(Op::Reserve(practitioner_id.clone(), NUMBER_BLOCK, reply))
            .map_err(|_| StoreError::Task("the committer thread stopped".into()))?;
        let first = answer
            .await
            .map_err(|_| StoreError::Task("the committer thread dropped a reservation".into()))??;
        lock(&self.numbers).insert(
            practitioner_id.to_string(),
            (first + 1, first + NUMBER_BLOCK),
        );
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A minimal sheet with the practitioner's next number.
    async fn sheet(store: &Store) -> NewSheet {
        let number = store
            .next_sheet_number(&PractitionerId::new(P))
            .await
            .unwrap();
        NewSheet {
            practitioner_id: P.into(),
            number,
            destination: "017510001".into(),
            der: fse_formats::fse::CareSheet::sample(number)
                .to_der()
                .unwrap(),
            created_at: "20261130100000Z".parse().unwrap(),
            ..Default::default()
        }
    }

    /// A sheet of `beneficiary` withholding `cents` (one participation) on `date`.
    async fn withholding(store: &Store, beneficiary: &str, date: &str, cents: u64) -> NewSheet {
        NewSheet {
            beneficiary_key: beneficiary.into(),
            participation: vec![fse_queue::Withheld {
                care_date: date.into(),
                acts: 1,
                cents,
            }],
            ..sheet(store).await
        }
    }

    /// A line of a history, of practitioner `P`.
    fn line(date: &str, acts: u32, cents: u64) -> PfRecord {
        PfRecord {
            care_date: date.into(),
            professional: Some(P.into()),
            acts: Some(acts),
            cents,
        }
    }

    const P: &str = "10000000001";

    /// The history in memory follows the commits and a cancellation, and is what a sheet is
    /// priced on until forgotten.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn participation_histories_in_memory_follow_the_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::open(&path).unwrap();
        let (b, from, until) = ("1850578006084|19850512|1", "20250101", "20261130");
        let history = || store.participation_history(b, from, until);
        assert_eq!(history().await.unwrap(), vec![]);
        // A commit adds to the history in memory.
        let first = withholding(&store, b, "20261130", 100).await;
        store.insert_sheet(first).await.unwrap();
        let second = withholding(&store, b, "20261129", 200).await;
        let Inserted::New(second) = store.insert_sheet(second).await.unwrap() else {
            panic!("a new sheet expected");
        };
        let also = withholding(&store, "another", "20261130", 100).await;
        store.insert_sheet(also).await.unwrap();
        assert_eq!(
            history().await.unwrap(),
            vec![line("20261129", 1, 200), line("20261130", 1, 100)]
        );
        assert_eq!(
            store
                .participation_history(b, from, "20261129")
                .await
                .unwrap(),
            vec![line("20261129", 1, 200)],
            "only the dates asked for"
        );
        // Written by another connection, out of the committer's sight: the history in memory
        // does not show it until forgotten.
        let mut outside = Queue::open(&path).unwrap();
        let n = store
            .next_sheet_number(&PractitionerId::new(P))
            .await
            .unwrap();
        outside
            .insert_sheet(&NewSheet {
                number: n,
                ..withholding(&store, b, "20261130", 50).await
            })
            .unwrap();
        assert_eq!(history().await.unwrap()[1], line("20261130", 1, 100));
        store.forget_history(b);
        assert_eq!(history().await.unwrap()[1], line("20261130", 2, 150));
        // Another professional's sheet of the same day: a line of its own, in memory as in
        // the file.
        let number = store
            .next_sheet_number(&PractitionerId::new("10000000002"))
            .await
            .unwrap();
        let theirs = NewSheet {
            practitioner_id: "10000000002".into(),
            number,
            ..withholding(&store, b, "20261130", 200).await
        };
        store.insert_sheet(theirs).await.unwrap();
        let in_memory = history().await.unwrap();
        assert_eq!(
            in_memory[2],
            PfRecord {
                professional: Some("10000000002".into()),
                ..line("20261130", 1, 200)
            }
        );
        store.forget_history(b);
        assert_eq!(
            history().await.unwrap(),
            in_memory,
            "the file says the same"
        );
        // A cancelled sheet's participation stops counting.
        store.forget_histories();
        let id = second.id;
        store
            .call(move |q| q.cancel_sheet(id, "wrong patient"))
            .await
            .unwrap();
        store.forget_histories();
        assert_eq!(history().await.unwrap()[0], line("20261130", 2, 150));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    // The test holds the quick reader's lock across `read_now` on purpose: that is the busy case.
    #[allow(clippy::await_holding_lock)]
    async fn read_now_answers_at_once_and_goes_through_the_pool_while_its_connection_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.db")).unwrap();
        let count = |q: &Queue| Ok(q.stats()?.sheets.values().sum::<u64>());
        assert_eq!(store.read_now(count).await.unwrap(), 0);
        store.insert_sheet(sheet(&store).await).await.unwrap();
        // Committed before answered: the quick reader sees it.
        assert_eq!(store.read_now(count).await.unwrap(), 1);
        // Its connection held elsewhere: the same answer by the blocking pool.
        let held = store.quick_reader.lock().unwrap();
        assert_eq!(store.read_now(count).await.unwrap(), 1);
        drop(held);
    }

    /// The checkpointer thread copies the WAL into the database file within a moment of the
    /// commits, which never checkpoint by themselves below the backstop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpointer_thread_copies_the_wal_off_the_committer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::open(&path).unwrap();
        let writer = store
            .call(|q| q.pragma("wal_autocheckpoint"))
            .await
            .unwrap();
        assert_eq!(writer, CHECKPOINT_BACKSTOP.to_string());
        for _ in 0..20 {
            store.insert_sheet(sheet(&store).await).await.unwrap();
        }
        // Let checkpoints go by, then look from a read-only connection, which may not copy
        // anything itself: it reports the counts when the WAL is all in the file already, and
        // fails when there is something left to copy.
        let start = std::time::Instant::now();
        let mut copied = false;
        while start.elapsed() < CHECKPOINT_EVERY * 20 && !copied {
            std::thread::sleep(CHECKPOINT_EVERY * 2);
            copied = matches!(wal_counts(&path), Ok((log, done)) if log > 0 && done == log);
        }
        assert!(copied, "the WAL was not checkpointed by the thread");
    }

    /// A reservation is in the mark before its numbers are handed out; the copy holds every
    /// sheet; a close leaves the WAL empty; the files are 0600.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mark_follows_reservations_and_close_empties_the_wal() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::open(&path).unwrap();
        for _ in 0..130 {
            store.insert_sheet(sheet(&store).await).await.unwrap();
        }
        // 130 sheets: two blocks of 128 reserved, the next number 2 × 128 + 1 = 257.
        let mark = crate::mark::Mark::read(&crate::mark::mark_path(&path))
            .unwrap()
            .unwrap();
        assert_eq!(mark.practitioners[P].next_sheet, 257);
        let copy = dir.path().join("copy.db");
        let made = store.backup_to(copy.clone()).await.unwrap();
        assert_eq!(made.stats.sheets.values().sum::<u64>(), 130);
        assert_eq!(made.high_water.practitioners[P].last_sheet, Some(130));
        store.close().await.unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("q.db-wal"))
                .unwrap()
                .len(),
            0
        );
        for f in ["q.db", "q.db-wal", "q.db-shm", "q.db.mark", "copy.db"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    /// The WAL's frames and those already in the database file, asked of a read-only
    /// connection.
    fn wal_counts(path: &Path) -> rusqlite::Result<(i64, i64)> {
        let ro = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        ro.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        })
    }
}
