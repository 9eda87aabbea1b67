//! How a rights request reaches the insurer and its answer comes back: AMQP request/reply
//! (RabbitMQ's direct reply-to, a correlation id, `expiration` = the deadline) or the spool
//! folders (`<outbox>/rights/requests/<id>.der` → `<outbox>/rights/answers/<id>.der`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use fse_formats::wire;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::{oneshot, Mutex};

use crate::transport::amqp::redact;

/// The pseudo-queue of RabbitMQ's direct reply-to: answers come straight to this channel.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Header of a request: its deadline, Unix milliseconds (the insurer drops it after).
pub const HEADER_DEADLINE_MS: &str = "x-fsed-deadline-ms";
/// How often the spool answers folder is looked at while an answer is awaited.
const SPOOL_POLL: Duration = Duration::from_millis(5);

/// Answers awaited, by correlation id.
type Pending = Arc<StdMutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The broker or the spool could not take the request.
    #[error("rights service out of reach: {0}")]
    Unreachable(String),
    /// Nobody serves rights requests (no queue `fsed.rights` on the broker).
    #[error(
        "no rights service: the request was unroutable (queue {} absent)",
        wire::RIGHTS_QUEUE
    )]
    NoService,
    /// No answer before the deadline.
    #[error("no answer within {0} ms")]
    Timeout(u64),
}

/// One AMQP connection with its reply consumer (made by the link, opaque outside).
pub struct Session {
    _conn: Connection,
    channel: Channel,
    pending: Pending,
}

/// The way to the insurer's rights service.
pub enum Link {
    /// RabbitMQ.
    Amqp {
        /// Broker URL (may carry credentials).
        url: String,
        /// The connection in use, made at the first request and after a failure.
        session: Mutex<Option<Arc<Session>>>,
    },
    /// The spool outbox's `rights` folder.
    Spool {
        /// `<outbox>/rights/requests`.
        requests: PathBuf,
        /// `<outbox>/rights/answers`.
        answers: PathBuf,
    },
}

impl Link {
    /// Over the broker at `url`.
    pub fn amqp(url: &str) -> Link {
        Link::Amqp {
            url: url.to_string(),
            session: Mutex::new(None),
        }
    }

    /// Over the spool whose outbox is `outbox`.
    pub fn spool(outbox: &std::path::Path) -> Link {
        let root = outbox.join(wire::SPOOL_RIGHTS_DIR);
        Link::Spool {
            requests: root.join(wire::SPOOL_RIGHTS_REQUESTS),
            answers: root.join(wire::SPOOL_RIGHTS_ANSWERS),
        }
    }

    /// Sends request `der` under `id` and waits at most `timeout` for its answer's bytes.
    pub async fn ask(
        &self,
        id: &str,
        der: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = Instant::now() + timeout;
        match self {
            Link::Amqp { url, session } => {
                match tokio::time::timeout(timeout, ask_amqp(url, session, id, der, timeout)).await
                {
                    Ok(r) => r,
                    Err(_) => Err(LinkError::Timeout(ms)),
                }
            }
            Link::Spool { requests, answers } => {
                ask_spool(requests, answers, id, der, deadline, ms).await
            }
        }
    }
}

async fn ask_amqp(
    url: &str,
    slot: &Mutex<Option<Arc<Session>>>,
    id: &str,
    der: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, LinkError> {
    let session = {
        let mut guard = slot.lock().await;
        match guard.as_ref() {
            Some(s) if s.channel.status().connected() => Arc::clone(s),
            _ => {
                let s = Arc::new(connect(url).await?);
                *guard = Some(Arc::clone(&s));
                s
            }
        }
    };
    let (tx, rx) = oneshot::channel();
    lock(&session.pending).insert(id.to_string(), tx);
    // Forgotten however this ends (an answer, an error, the caller's deadline).
    let _forget = Forget(&session.pending, id);
    let sent = publish(&session.channel, id, &der, timeout).await;
    if let Err(e) = sent {
        if matches!(e, LinkError::Unreachable(_)) {
            // The connection may be gone: a new one at the next request.
            *slot.lock().await = None;
        }
        return Err(e);
    }
    rx.await
        .map_err(|_| LinkError::Unreachable("the broker connection closed".into()))
}

/// Removes a request from the awaited ones when dropped.
struct Forget<'a>(&'a Pending, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(self.1);
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn publish(
    channel: &Channel,
    id: &str,
    der: &[u8],
    timeout: Duration,
) -> Result<(), LinkError> {
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let deadline =
        chrono::Utc::now().timestamp_millis() + i64::try_from(ms).unwrap_or(i64::MAX / 2);
    let mut headers = FieldTable::default();
    headers.insert(HEADER_DEADLINE_MS.into(), AMQPValue::LongLongInt(deadline));
    let props = BasicProperties::default()
        .with_correlation_id(id.into())
        .with_reply_to(DIRECT_REPLY_TO.into())
        .with_expiration(ms.to_string().into())
        .with_type(wire::TYPE_RIGHTS_REQUEST.into())
        .with_content_type(wire::CONTENT_TYPE_DER.into())
        .with_headers(headers);
    let unreachable = |e: lapin::Error| LinkError::Unreachable(e.to_string());
    let confirm = channel
        .basic_publish(
            "".into(),
            wire::RIGHTS_QUEUE.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            der,
            props,
        )
        .await
        .map_err(unreachable)?
        .await
        .map_err(unreachable)?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(LinkError::NoService),
        Confirmation::Nack(_) | Confirmation::NotRequested => Err(LinkError::Unreachable(
            "the broker did not take the request".into(),
        )),
    }
}

/// A connection with confirms on and the direct reply-to consumer, whose answers a task
/// hands to the requests awaiting them.
async fn connect(url: &str) -> Result<Session, LinkError> {
    let fail = |what: &str, e: lapin::Error| {
        LinkError::Unreachable(format!("{what} {}: {e}", redact(url)))
    };
    let props = ConnectionProperties::default().with_connection_name("fsed rights".into());
    let conn = Connection::connect(url, props)
        .await
        .map_err(|e| fail("connect", e))?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| fail("channel", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| fail("confirm_select", e))?;
    let mut consumer = channel
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "fsed-rights".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| fail("reply consumer", e))?;
    let pending: Pending = Arc::default();
    let waiting = Arc::clone(&pending);
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let Some(id) = delivery.properties.correlation_id() else {
                continue;
            };
            // An answer nobody waits for any more (late) is dropped.
            if let Some(tx) = lock(&waiting).remove(id.as_str()) {
                let _ = tx.send(delivery.data);
            }
        }
        // The connection is gone: every request waiting fails at once.
        lock(&waiting).clear();
    });
    Ok(Session {
        _conn: conn,
        channel,
        pending,
    })
}

async fn ask_spool(
    requests: &std::path::Path,
    answers: &std::path::Path,
    id: &str,
    der: Vec<u8>,
    deadline: Instant,
    ms: u64,
) -> Result<Vec<u8>, LinkError> {
    let name = format!("{id}.{}", wire::SPOOL_RIGHTS_SUFFIX);
    let (req_dir, ans_dir, file) = (requests.to_path_buf(), answers.to_path_buf(), name.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&req_dir)?;
        std::fs::create_dir_all(&ans_dir)?;
        let tmp = req_dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, &der)?;
        std::fs::rename(&tmp, req_dir.join(&file))
    })
    .await
    .map_err(|e| LinkError::Unreachable(e.to_string()))?
    .map_err(|e| LinkError::Unreachable(format!("spool request not written: {e}")))?;
    let answer = answers.join(&name);
    loop {
        match tokio::fs::read(&answer).await {
            Ok(bytes) => {
                let _ = tokio::fs::remove_file(&answer).await;
                return Ok(bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LinkError::Unreachable(format!("spool answer: {e}"))),
        }
        if Instant::now() >= deadline {
            // Not taken in time: take the request back, so none piles up for an absent
            // insurer (it may already be gone, taken).
            let _ = tokio::fs::remove_file(requests.join(&name)).await;
            return Err(LinkError::Timeout(ms));
        }
        tokio::time::sleep(SPOOL_POLL).await;
    }
}
