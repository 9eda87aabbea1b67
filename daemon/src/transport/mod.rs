//! Transports that carry signed lots to the insurers and bring their
//! acknowledgements back: AMQP ([`amqp`]) or a spool directory ([`spool`]).

pub mod amqp;
pub mod spool;

/// The transport in use.
pub enum Transport {
    /// Spool directory.
    Spool(spool::Spool),
    /// RabbitMQ.
    Amqp(Box<amqp::AmqpTransport>),
}

/// Why a lot was not sent; it stays queued and is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// What happened.
    pub message: String,
    /// No queue is bound for the lot's destination: waiting will not help until an insurer
    /// binds one, so it is an alarm (`lot.unroutable`).
    pub unroutable: bool,
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Lots in flight at most by default: published, their confirms not yet in.
pub const DEFAULT_WINDOW: usize = 32;

impl From<amqp::TransportError> for SendFailure {
    fn from(e: amqp::TransportError) -> SendFailure {
        SendFailure {
            unroutable: matches!(e, amqp::TransportError::Unroutable { .. }),
            message: e.to_string(),
        }
    }
}

/// Runs a spool write on the blocking pool; any failure is a plain [`SendFailure`].
async fn spooled(
    write: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<(), SendFailure> {
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|message| SendFailure {
            message,
            unroutable: false,
        })
}

impl Transport {
    /// Self-diagnosis: over AMQP, a fresh connection declares the topology and looks at the
    /// return queue; with a spool, its directories must take a file, and the inbox entries
    /// quarantined since start are counted. Says what it found.
    pub async fn check(&self) -> Result<String, String> {
        match self {
            Transport::Amqp(t) => t.check().await.map_err(|e| e.to_string()),
            Transport::Spool(s) => {
                let (outbox, inbox) = (s.outbox.clone(), s.inbox.clone());
                let (quarantined, quarantine) = (s.quarantined(), s.quarantine_dir());
                tokio::task::spawn_blocking(move || {
                    for dir in [&outbox, &inbox] {
                        let probe = dir.join(".fsed-doctor");
                        std::fs::write(&probe, b"")
                            .and_then(|()| std::fs::remove_file(&probe))
                            .map_err(|e| format!("spool directory {}: {e}", dir.display()))?;
                    }
                    Ok(format!(
                        "spool: outbox {} and inbox {} writable; {quarantined} inbox entries quarantined since start (in {})",
                        outbox.display(),
                        inbox.display(),
                        quarantine.display()
                    ))
                })
                .await
                .map_err(|e| e.to_string())?
            }
        }
    }

    /// Sends signed lots (`(id, destination, DER)`), at most a window's worth: over AMQP all
    /// are published before their confirms are awaited. One result per lot, in order; each
    /// `Ok` only once that lot is durable on the other side.
    pub async fn send_many(&self, lots: &[(&str, &str, &[u8])]) -> Vec<Result<(), SendFailure>> {
        match self {
            Transport::Amqp(a) => a
                .publish_lots(lots)
                .await
                .into_iter()
                .map(|r| r.map_err(SendFailure::from))
                .collect(),
            Transport::Spool(s) => {
                let mut out = Vec::with_capacity(lots.len());
                for (id, _, der) in lots {
                    let (s, id, der) = (s.clone(), id.to_string(), der.to_vec());
                    out.push(spooled(move || s.send(&id, &der)).await);
                }
                out
            }
        }
    }

    /// Sends DRE lots (`(lot id, AMC number, DER)`) to their AMCs, as [`Transport::send_many`]
    /// does lots: over AMQP to the AMC exchange with routing key = AMC number and message id
    /// `<lot id>/<AMC>`; in the spool as `<lot id>.<AMC>.dre`.
    pub async fn send_dre_lots(
        &self,
        lots: &[(&str, &str, &[u8])],
    ) -> Vec<Result<(), SendFailure>> {
        match self {
            Transport::Amqp(a) => {
                let ids: Vec<String> = lots
                    .iter()
                    .map(|(id, amc, _)| format!("{id}/{amc}"))
                    .collect();
                let with_ids: Vec<(&str, &str, &[u8])> = lots
                    .iter()
                    .zip(&ids)
                    .map(|((_, amc, der), id)| (id.as_str(), *amc, *der))
                    .collect();
                a.publish_dre_lots(&with_ids)
                    .await
                    .into_iter()
                    .map(|r| r.map_err(SendFailure::from))
                    .collect()
            }
            Transport::Spool(s) => {
                let mut out = Vec::with_capacity(lots.len());
                for (id, amc, der) in lots {
                    let (s, id, amc, der) =
                        (s.clone(), id.to_string(), amc.to_string(), der.to_vec());
                    out.push(spooled(move || s.send_dre(&id, &amc, &der)).await);
                }
                out
            }
        }
    }

    /// Sends one attachment lot: over AMQP to the AMO exchange (routing key = destination,
    /// `type` = `fsed.attachment-lot.v1`); in the spool as `<id>.att`.
    pub async fn send_attachment_lot(
        &self,
        lot_id: &str,
        destination: &str,
        der: &[u8],
    ) -> Result<(), SendFailure> {
        match self {
            Transport::Amqp(a) => a
                .publish_attachment_lot(lot_id, destination, der)
                .await
                .map_err(SendFailure::from),
            Transport::Spool(s) => {
                let (s, id, der) = (s.clone(), lot_id.to_string(), der.to_vec());
                spooled(move || s.send_attachment_lot(&id, &der)).await
            }
        }
    }
}
