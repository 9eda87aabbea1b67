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

impl Transport {
    /// Sends DRE lots (`(lot id, AMC number, DER)`) to their AMCs, as [`Transport::send_many`]
    /// does lots: over AMQP to the AMC exchange with routing key = AMC number; in the spool as
    /// `<lot id>.<AMC>.dre`.
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
                    .map(|r| {
                        r.map_err(|e| SendFailure {
                            unroutable: matches!(e, amqp::TransportError::Unroutable { .. }),
                            message: e.to_string(),
                        })
                    })
                    .collect()
            }
            Transport::Spool(s) => {
                let mut out = Vec::with_capacity(lots.len());
                for (id, amc, der) in lots {
                    let (s, id, amc, der) =
                        (s.clone(), id.to_string(), amc.to_string(), der.to_vec());
                    out.push(
                        tokio::task::spawn_blocking(move || s.send_dre(&id, &amc, &der))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()))
                            .map_err(|message| SendFailure {
                                message,
                                unroutable: false,
                            }),
                    );
                }
                out
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
                .map(|r| {
                    r.map_err(|e| SendFailure {
                        unroutable: matches!(e, amqp::TransportError::Unroutable { .. }),
                        message: e.to_string(),
                    })
                })
                .collect(),
            Transport::Spool(_) => {
                let mut out = Vec::with_capacity(lots.len());
                for (id, destination, der) in lots {
                    out.push(self.send(id, destination, der).await);
                }
                out
            }
        }
    }

    /// Sends one signed lot; `Ok` only once it is durable on the other side (file synced, broker confirmed).
    pub async fn send(
        &self,
        lot_id: &str,
        destination: &str,
        der: &[u8],
    ) -> Result<(), SendFailure> {
        let plain = |message: String| SendFailure {
            message,
            unroutable: false,
        };
        match self {
            Transport::Spool(s) => {
                let (s, id, der) = (s.clone(), lot_id.to_string(), der.to_vec());
                tokio::task::spawn_blocking(move || s.send(&id, &der))
                    .await
                    .map_err(|e| plain(e.to_string()))?
                    .map_err(|e| plain(e.to_string()))
            }
            Transport::Amqp(a) => {
                a.publish_lot(lot_id, destination, der)
                    .await
                    .map_err(|e| SendFailure {
                        unroutable: matches!(e, amqp::TransportError::Unroutable { .. }),
                        message: e.to_string(),
                    })
            }
        }
    }
}
