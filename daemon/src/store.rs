//! The durable queue (`fse_queue`, synchronous SQLite) behind an async
//! handle: every call runs on tokio's blocking pool, one writer at a time.
//! Two paths are shaped for many concurrent clients: sheet inserts go to a
//! committer thread that stores every insert waiting at that moment in one
//! transaction (group commit: one fsync for the lot of them), and sheet
//! numbers are reserved from the database in blocks and handed out from
//! memory (a block cut short by a restart leaves a gap, never a reuse).

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use fse_queue::{Inserted, NewSheet, Queue, QueueError};
use tokio::sync::oneshot;

/// How many sheet numbers one reservation takes.
pub const NUMBER_BLOCK: u64 = 32;

/// The most inserts one group commit carries.
pub const MAX_GROUP: usize = 512;

type InsertReply = oneshot::Sender<Result<Inserted, QueueError>>;

/// Shared handle to the queue.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Queue>>,
    inserts: mpsc::Sender<(NewSheet, InsertReply)>,
    numbers: Arc<Mutex<HashMap<String, (u64, u64)>>>,
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

impl Store {
    /// Opens (and checks) the database and starts the committer thread.
    pub fn open(path: &Path) -> Result<Store, QueueError> {
        let inner = Arc::new(Mutex::new(Queue::open(path)?));
        let (tx, rx) = mpsc::channel::<(NewSheet, InsertReply)>();
        let queue = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("fsed-commit".into())
            .spawn(move || committer(&queue, &rx))
            .map_err(|e| QueueError::Data(format!("cannot start the committer thread: {e}")))?;
        Ok(Store {
            inner,
            inserts: tx,
            numbers: Arc::new(Mutex::new(HashMap::new())),
        })
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

    /// Stores a sheet, durably, sharing the commit with the other inserts waiting.
    pub async fn insert_sheet(&self, new: NewSheet) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inserts
            .send((new, reply))
            .map_err(|_| StoreError::Task("the committer thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Task("the committer thread dropped an insert".into()))?
            .map_err(StoreError::from)
    }

    /// The next sheet number of a practitioner: from the block reserved in memory, or from a
    /// new block reserved in the database (one commit per [`NUMBER_BLOCK`] sheets).
    pub async fn next_sheet_number(&self, practitioner_id: &str) -> Result<u64, StoreError> {
        let numbers = Arc::clone(&self.numbers);
        let inner = Arc::clone(&self.inner);
        let pid = practitioner_id.to_string();
        tokio::task::spawn_blocking(move || {
            let mut cache = lock(&numbers);
            if let Some((next, end)) = cache.get_mut(&pid) {
                if *next < *end {
                    *next += 1;
                    return Ok(*next - 1);
                }
            }
            let first = lock(&inner).reserve_sheet_numbers(&pid, NUMBER_BLOCK)?;
            cache.insert(pid, (first + 1, first + NUMBER_BLOCK));
            Ok(first)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Takes the inserts as they come; each round stores all those waiting in one transaction.
fn committer(queue: &Mutex<Queue>, rx: &mpsc::Receiver<(NewSheet, InsertReply)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let (news, replies): (Vec<NewSheet>, Vec<InsertReply>) = batch.into_iter().unzip();
        let results = lock(queue).insert_sheets(&news);
        match results {
            Ok(each) => {
                for (reply, result) in replies.into_iter().zip(each) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, sheets = news.len(), "group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(QueueError::Data(format!("group commit failed: {e}"))));
                }
            }
        }
    }
}
