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

impl Transport {
    /// Sends one signed lot; `Ok` only once it is durable on the other side (file synced, broker confirmed).
    pub async fn send(&self, lot_id: &str, destination: &str, der: &[u8]) -> Result<(), String> {
        match self {
            Transport::Spool(s) => {
                let (s, id, der) = (s.clone(), lot_id.to_string(), der.to_vec());
                tokio::task::spawn_blocking(move || s.send(&id, &der))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
            Transport::Amqp(a) => a
                .publish_lot(lot_id, destination, der)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}
