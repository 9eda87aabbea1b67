//! The durable queue (`fse_queue`, synchronous SQLite) behind an async
//! handle: every call runs on tokio's blocking pool, one writer at a time.

use std::path::Path;
use std::sync::{Arc, Mutex};

use fse_queue::{Queue, QueueError};

/// Shared handle to the queue.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Queue>>,
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

impl Store {
    /// Opens (and checks) the database.
    pub fn open(path: &Path) -> Result<Store, QueueError> {
        Ok(Store {
            inner: Arc::new(Mutex::new(Queue::open(path)?)),
        })
    }

    /// Runs `f` with the queue on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Queue) -> Result<T, QueueError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means a previous call panicked mid-way; SQLite rolled its transaction back, so the connection is still consistent.
            let mut q = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut q)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
        .map_err(StoreError::from)
    }
}
