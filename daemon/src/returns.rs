//! Acknowledgements coming back: each ARL is checked against the lot it
//! names (same Merkle root) and applied to the queue in one transaction;
//! only then is its file removed or its broker message acked. Applying the
//! same ARL twice changes nothing.

use std::sync::Arc;
use std::time::Duration;

use fse_formats::ack::Arl;
use fse_formats::lot::SignedLot;
use fse_queue::ArlOutcome;

use crate::events::Bus;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::transport::spool::Spool;
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
    /// Refused (unreadable, unknown lot, wrong root): kept out of the queue, logged.
    Refused(String),
}

/// Applies one ARL given as DER. `Err` only when the store failed (retry later).
pub async fn apply(store: &Store, bytes: Vec<u8>) -> Result<Applied, String> {
    let arl = match Arl::from_der(&bytes) {
        Ok(a) => a,
        Err(e) => return Ok(Applied::Refused(format!("unreadable ARL: {e}"))),
    };
    let id = arl.lot_id.clone();
    let Some(lot) = store
        .call(move |q| q.get_lot(&id))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Applied::Refused(format!(
            "ARL for unknown lot {}",
            arl.lot_id
        )));
    };
    let root = lot
        .signed_der
        .as_deref()
        .and_then(|d| SignedLot::from_der(d).ok())
        .map(|l| hex::encode(l.header.merkle_root));
    if root.as_deref() != Some(arl.merkle_root.as_str()) {
        return Ok(Applied::Refused(format!(
            "ARL for lot {} names another content (Merkle root mismatch)",
            arl.lot_id
        )));
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

/// Reads the spool inbox until shutdown.
///
/// It sleeps on inotify (a file renamed or written into the inbox), with a slow rescan as a
/// safety net; without inotify it rescans every 200 ms.
pub async fn run_spool(store: Store, spool: Spool, events: Bus, mut shutdown: Shutdown) {
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
                    let Ok(bytes) = tokio::fs::read(&path).await else {
                        continue;
                    };
                    match apply(&store, bytes).await {
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

/// Consumes the AMQP return queue until shutdown, reconnecting on failure.
pub async fn run_amqp(
    store: Store,
    transport: Arc<Transport>,
    events: Bus,
    mut shutdown: Shutdown,
) {
    let Transport::Amqp(amqp) = transport.as_ref() else {
        return;
    };
    loop {
        let mut stream = match amqp.returns().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot consume returns; retrying");
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.wait() => return,
                n = stream.next() => n,
            };
            let Some(Ok(msg)) = next else { break };
            match apply(&store, msg.body.clone()).await {
                Ok(outcome) => {
                    log_outcome(&outcome, "amqp", &events);
                    if let Err(e) = msg.ack().await {
                        tracing::warn!(error = %e, "ack of an applied ARL failed; it will come again and be a duplicate");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ARL not applied; reconnecting so the broker redelivers it");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn log_outcome(outcome: &Applied, source: &str, events: &Bus) {
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
        Applied::Refused(why) => tracing::warn!(source, reason = %why, "ARL refused"),
    }
}
