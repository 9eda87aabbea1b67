//! The threads that write: the committer, which stores every insert, reservation and lot
//! change waiting at that moment in one transaction (group commit), and the checkpointer,
//! which copies the WAL into the database file off the committer's path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use fse_queue::{GroupWrite, GroupWritten, Inserted, NewSheet, PractitionerId, Queue, QueueError};
use tokio::sync::oneshot;

use super::history::{remember_withheld, Histories};
use super::{lock, CHECKPOINT_EVERY, GATHER, MAX_GROUP};
use crate::mark::{Keeper, MARK_EVERY};

type InsertReply = oneshot::Sender<Result<Inserted, QueueError>>;
type ReserveReply = oneshot::Sender<Result<u64, QueueError>>;
type WriteReply = oneshot::Sender<Result<GroupWritten, QueueError>>;

/// A write for the committer thread.
pub(super) enum Op {
    /// Store a sheet.
    Insert(Box<NewSheet>, InsertReply),
    /// Reserve a block of sheet numbers for a practitioner.
    Reserve(PractitionerId, u64, ReserveReply),
    /// A lot's change of state, in the commit of the sheets stored at that moment.
    Write(Box<GroupWrite>, WriteReply),
    /// Answer once the group it came with is committed (a health check).
    Ping(oneshot::Sender<()>),
}

/// Copies the WAL into the database file every [`CHECKPOINT_EVERY`] (PASSIVE: it waits for
/// nobody and nobody waits for it) until the store is gone.
/// Also raises the high-water mark to the last commit, at most every [`MARK_EVERY`].
/// Also gives the connections' page caches back once nothing was committed for [`IDLE_RELEASE`]
/// (see [`Idle`]).
pub(super) fn checkpoints(
    checkpointer: &Queue,
    alive: &std::sync::Weak<Mutex<Queue>>,
    mark: &Keeper,
    idle: &Idle,
) {
    let mut marked = std::time::Instant::now();
    let (mut seen, mut since, mut released) = (idle.commits.load(Ordering::Relaxed), marked, true);
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(writer) = alive.upgrade() else {
            return;
        };
        if let Err(e) = checkpointer.checkpoint_passive() {
            tracing::warn!(error = %e, "WAL checkpoint failed; the next one tries again");
        }
        if marked.elapsed() >= MARK_EVERY {
            marked = std::time::Instant::now();
            mark.raise(checkpointer, false);
        }
        let commits = idle.commits.load(Ordering::Relaxed);
        if commits != seen {
            (seen, since, released) = (commits, std::time::Instant::now(), false);
        } else if !released && since.elapsed() >= IDLE_RELEASE {
            released = true;
            idle.release(checkpointer, &writer);
        }
    }
}

/// How long the store waits with nothing committed before its connections give their page
/// caches back.
pub(super) const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the checkpointer needs to see the store idle and shrink its memory: the committer's
/// count of commits and the reading connections (weak: they go with the store).
pub(super) struct Idle {
    /// Commits made so far (the committer adds one per group commit).
    pub(super) commits: Arc<AtomicU64>,
    /// The reading connections.
    pub(super) readers: Vec<std::sync::Weak<Mutex<Queue>>>,
}

impl Idle {
    /// Asks every connection to give its page cache back; one busy at that moment is skipped
    /// (the store is not idle after all, and its cache is in use).
    fn release(&self, checkpointer: &Queue, writer: &Mutex<Queue>) {
        let shrink = |queue: &Queue| {
            if let Err(e) = queue.release_memory() {
                tracing::debug!(error = %e, "giving a page cache back failed");
            }
        };
        shrink(checkpointer);
        if let Ok(queue) = writer.try_lock() {
            shrink(&queue);
        }
        for reader in self.readers.iter().filter_map(std::sync::Weak::upgrade) {
            if let Ok(queue) = reader.try_lock() {
                shrink(&queue);
            }
        }
        tracing::debug!("idle: page caches given back");
    }
}

/// The ops that go into one commit: `first`, those already waiting, and (when several clients
/// are writing) those that come within [`GATHER`]; `peak` follows how many clients write at once.
fn gather(rx: &mpsc::Receiver<Op>, first: Op, peak: &mut usize) -> Vec<Op> {
    let mut batch = vec![first];
    let drain = |batch: &mut Vec<Op>| {
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
    };
    drain(&mut batch);
    // The clients the recent commits answered are coming back: wait for as many (at most
    // GATHER) so they share this commit. A lone client never waits.
    let deadline = std::time::Instant::now() + GATHER;
    let inserts = |batch: &Vec<Op>| batch.iter().filter(|o| matches!(o, Op::Insert(..))).count();
    // A reservation is waited for by the clients themselves: it goes at once.
    let reserving = |batch: &Vec<Op>| batch.iter().any(|o| matches!(o, Op::Reserve(..)));
    while !reserving(&batch) && inserts(&batch) < (*peak).min(MAX_GROUP) && batch.len() < MAX_GROUP
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(more) => batch.push(more),
            Err(_) => break,
        }
    }
    drain(&mut batch);
    *peak = inserts(&batch).max(*peak - *peak / 16).max(1);
    batch
}

/// Takes the inserts as they come; each round stores all those waiting in one transaction.
///
/// A commit that reserved sheet numbers or made a lot raises the high-water mark (written
/// and synced) before anyone is answered: no number of a new block is handed out, and no
/// lot is signed, before the mark covers it.
pub(super) fn committer(
    queue: &Mutex<Queue>,
    rx: &mpsc::Receiver<Op>,
    histories: &Mutex<Histories>,
    mark: &Keeper,
    commits: &AtomicU64,
) {
    // How many clients write at once, as the recent commits saw it (slowly forgotten).
    let mut peak = 1usize;
    while let Ok(first) = rx.recv() {
        let batch = gather(rx, first, &mut peak);

        let (mut reservations, mut reserve_replies) = (Vec::new(), Vec::new());
        let (mut news, mut insert_replies) = (Vec::new(), Vec::new());
        let (mut writes, mut write_replies) = (Vec::new(), Vec::new());
        let mut pings = Vec::new();
        for op in batch {
            match op {
                Op::Insert(new, reply) => {
                    news.push(*new);
                    insert_replies.push(reply);
                }
                Op::Reserve(pid, count, reply) => {
                    reservations.push((pid, count));
                    reserve_replies.push(reply);
                }
                Op::Write(write, reply) => {
                    writes.push(*write);
                    write_replies.push(reply);
                }
                Op::Ping(reply) => pings.push(reply),
            }
        }
        if news.is_empty() && reservations.is_empty() && writes.is_empty() {
            for reply in pings {
                let _ = reply.send(());
            }
            continue;
        }
        let mut queue = lock(queue);
        match queue.commit_group_writes(&reservations, &news, &writes) {
            Ok(((numbers, inserted), written)) => {
                commits.fetch_add(1, Ordering::Relaxed);
                let lots_made = written
                    .iter()
                    .any(|w| matches!(w, Ok(GroupWritten::Closed(lots)) if !lots.is_empty()));
                if numbers.iter().any(Result::is_ok) || lots_made {
                    mark.raise(&queue, true);
                }
                drop(queue);
                for (reply, result) in reserve_replies.into_iter().zip(numbers) {
                    let _ = reply.send(result);
                }
                remember_withheld(histories, &news, &inserted);
                for (reply, result) in insert_replies.into_iter().zip(inserted) {
                    let _ = reply.send(result);
                }
                for (reply, result) in write_replies.into_iter().zip(written) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                drop(queue);
                tracing::error!(error = %e, sheets = news.len(), "group commit failed");
                let failed = || QueueError::Data(format!("group commit failed: {e}"));
                for reply in reserve_replies {
                    let _ = reply.send(Err(failed()));
                }
                for reply in insert_replies {
                    let _ = reply.send(Err(failed()));
                }
                for reply in write_replies {
                    let _ = reply.send(Err(failed()));
                }
            }
        }
        for reply in pings {
            let _ = reply.send(());
        }
    }
}
