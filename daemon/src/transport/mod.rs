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

impl Transport {
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
