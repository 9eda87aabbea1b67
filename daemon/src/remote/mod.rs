//! Cards held in other fseds' readers: for each `[[remote.fsed]]` a task keeps one connection
//! (mutual TLS, or a Unix socket on the same machine: [`connector`]), lists the cards there and
//! follows their `card.inserted` / `card.removed` events, so that they are known without
//! polling (`link`). [`RemoteCards`] is the handle billing, the batcher, `cards.list` and the
//! doctor use: the remote cards' snapshot, a proof of presence (`cards.authenticate`) and a lot
//! signature (`cards.sign`, idempotent by `request_id`) over the link, each within
//! `remote.timeout_ms`. A remote card's certificate is checked again here against this fsed's
//! own trust store, and every signature that comes back is verified here against the card's
//! public key: the other fsed's verdict is never taken on trust.
//!
//! The serving side of those calls (what any fsed answers) is `api::methods::card_ops`, with
//! its memory of signatures in [`served`].

pub mod config;
pub mod connector;
mod link;
pub mod lots;
pub mod served;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fse_formats::api::{self, ErrorObject};
use fse_formats::cards::{verify_signature, CardKind, CpsData, VitaleData};
use fse_formats::pki::{CertCheck, TrustStore};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

pub use served::SignCache;

/// Where a card is: this fsed (`"local"`) or another one, by its name here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// `"local"`, or the other fsed's name (`[[remote.fsed]] name`).
    pub fsed: String,
    /// The other fsed's address; none for a local card.
    pub address: Option<String>,
    /// The reader holding the card.
    pub reader: String,
}

impl Location {
    /// A card in this fsed's reader.
    pub fn local(reader: &str) -> Location {
        Location {
            fsed: "local".into(),
            address: None,
            reader: reader.into(),
        }
    }
}

/// A card in another fsed's reader, as this fsed knows it.
#[derive(Debug, Clone)]
pub struct RemoteCard {
    /// Where it is.
    pub location: Location,
    /// What it is.
    pub kind: CardKind,
    /// Its serial.
    pub serial: Option<String>,
    /// Whether its PIN was verified there (CPS), as last listed.
    pub pin_verified: bool,
    /// CPS contents.
    pub cps: Option<CpsData>,
    /// Vitale contents.
    pub vitale: Option<VitaleData>,
    /// This fsed's own check of its certificate (none without a trust store here, or for a
    /// card that is neither a CPS nor a Vitale card).
    pub certificate: Option<CertCheck>,
    /// The other fsed's `cards.list` entry, as it was listed.
    listed: Value,
}

impl RemoteCard {
    /// Reads an entry of another fsed's `cards.list`; `None` for an entry of a card that fsed
    /// itself holds remotely (only its own cards are used here) or that does not read.
    fn read(
        entry: &Value,
        fsed: &str,
        address: &str,
        trust: Option<&TrustStore>,
        now: i64,
    ) -> Option<RemoteCard> {
        if entry["location"]["fsed"]
            .as_str()
            .is_some_and(|f| f != "local")
        {
            return None;
        }
        let reader = entry["reader"].as_str()?.to_string();
        let kind: CardKind = serde_json::from_value(entry["kind"].clone()).ok()?;
        let mut cps: Option<CpsData> = serde_json::from_value(entry["cps"].clone()).ok();
        let mut vitale: Option<VitaleData> = serde_json::from_value(entry["vitale"].clone()).ok();
        // The certificate travels beside the contents (which never serialize it).
        let der = entry["certificate_der"]
            .as_str()
            .and_then(|h| hex::decode(h).ok());
        if let Some(c) = cps.as_mut() {
            c.certificate = der.clone();
        }
        if let Some(v) = vitale.as_mut() {
            v.certificate = der;
        }
        let card = match (&cps, &vitale) {
            (Some(c), _) => Some((c.certificate.as_deref(), &c.public_key)),
            (None, Some(v)) => Some((v.certificate.as_deref(), &v.public_key)),
            (None, None) => None,
        };
        let certificate =
            card.map(|(cert, key)| crate::cards::check_certificate(trust, cert, key, now));
        Some(RemoteCard {
            location: Location {
                fsed: fsed.to_string(),
                address: Some(address.to_string()),
                reader,
            },
            kind,
            serial: entry["serial"].as_str().map(str::to_string),
            pin_verified: entry["pin_verified"].as_bool().unwrap_or(false),
            cps,
            vitale,
            certificate,
            listed: entry.clone(),
        })
    }

    /// What `cards.list` shows of it here: the other fsed's entry, with this fsed's check of
    /// its certificate and its location.
    pub fn shown(&self) -> Value {
        let mut v = self.listed.clone();
        if let Some(obj) = v.as_object_mut() {
            match &self.certificate {
                Some(c) => {
                    obj.insert("certificate".into(), json!(c));
                }
                None => {
                    obj.remove("certificate");
                }
            }
            obj.insert("location".into(), json!(self.location));
        }
        v
    }
}

/// One other fsed as the doctor reports it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    /// Its name here.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Whether the link is up (connected, cards listed).
    pub reachable: bool,
    /// Since when it is (or is not) reachable, RFC 3339.
    pub since: String,
    /// Why the link last failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The cards seen there now.
    pub cards: usize,
}

/// What the other fsed answered, or why nothing came.
#[derive(Debug)]
enum Answer {
    /// Its result.
    Result(Value),
    /// Its error, as it sent it.
    Error(ErrorObject),
}

/// A call to send over a link.
struct Outgoing {
    method: &'static str,
    params: Value,
    reply: oneshot::Sender<Answer>,
}

/// What a link knows, shared between its task and the handle.
struct LinkState {
    cards: Vec<RemoteCard>,
    reachable: bool,
    since: String,
    last_error: Option<String>,
    /// Where calls go while connected.
    calls: Option<mpsc::Sender<Outgoing>>,
}

/// One other fsed.
struct Link {
    name: String,
    address: String,
    state: Mutex<LinkState>,
}

impl Link {
    fn new(name: &str, address: &str) -> Link {
        Link {
            name: name.into(),
            address: address.into(),
            state: Mutex::new(LinkState {
                cards: Vec::new(),
                reachable: false,
                since: now_text(),
                last_error: None,
                calls: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A poisoned lock only means a panic while assigning plain values: they are whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The cards of the other fseds, and card operations on them. Cheap to clone; the default
/// has no other fsed.
#[derive(Clone)]
pub struct RemoteCards {
    links: Arc<Vec<Arc<Link>>>,
    timeout: Duration,
}

impl Default for RemoteCards {
    fn default() -> Self {
        RemoteCards {
            links: Arc::default(),
            timeout: Duration::from_millis(10_000),
        }
    }
}

/// The error of a remote operation that could not be completed: nothing was stored, a repeat
/// is safe.
pub fn unreachable(fsed: &str, cause: &str) -> ApiError {
    ApiError(
        ErrorObject::new(
            api::CARD_UNREACHABLE,
            format!("the card on fsed {fsed} is out of reach: {cause}"),
            None,
        )
        .with("fsed", json!(fsed))
        .with("retry_safe", json!(true)),
    )
}

impl RemoteCards {
    /// Starts one link task per configured fsed (each reconnecting with a backoff of 1 s up to
    /// 30 s); card events of remote cards are published on `bus` with their location, and
    /// `wake` is notified when the remote cards change.
    pub fn start(
        section: &config::RemoteSection,
        connector: Arc<dyn connector::Connector>,
        trust: Option<Arc<TrustStore>>,
        bus: crate::events::Bus,
        wake: Arc<tokio::sync::Notify>,
        shutdown: crate::shutdown::Shutdown,
    ) -> RemoteCards {
        let links: Vec<Arc<Link>> = section
            .fsed
            .iter()
            .map(|f| Arc::new(Link::new(&f.name, &f.address)))
            .collect();
        for l in &links {
            let task = link::Task {
                link: Arc::clone(l),
                connector: Arc::clone(&connector),
                trust: trust.clone(),
                bus: bus.clone(),
                wake: Arc::clone(&wake),
            };
            tokio::spawn(task.run(shutdown.clone()));
        }
        RemoteCards {
            links: Arc::new(links),
            timeout: Duration::from_millis(section.timeout_ms),
        }
    }

    /// Whether any other fsed is configured.
    pub fn is_configured(&self) -> bool {
        !self.links.is_empty()
    }

    /// The cards of every reachable fsed, in the configuration's order.
    pub fn snapshot(&self) -> Vec<RemoteCard> {
        self.links
            .iter()
            .flat_map(|l| l.lock().cards.clone())
            .collect()
    }

    /// The first remote Vitale card present (with this serial, when given).
    pub fn vitale(&self, serial: Option<&str>) -> Option<RemoteCard> {
        self.snapshot().into_iter().find(|c| {
            c.vitale
                .as_ref()
                .is_some_and(|v| serial.is_none_or(|s| v.serial == s))
        })
    }

    /// The remote CPS of the practitioner with this national id.
    pub fn cps_of(&self, national_id: &str) -> Option<RemoteCard> {
        self.snapshot().into_iter().find(|c| {
            c.cps
                .as_ref()
                .is_some_and(|cps| cps.holder.national_id == national_id)
        })
    }

    /// Each other fsed: reachable or not, since when, why not, its cards.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links
            .iter()
            .map(|l| {
                let s = l.lock();
                LinkStatus {
                    name: l.name.clone(),
                    address: l.address.clone(),
                    reachable: s.reachable,
                    since: s.since.clone(),
                    last_error: s.last_error.clone(),
                    cards: s.cards.len(),
                }
            })
            .collect()
    }

    /// One call to the fsed named `fsed`, within the timeout.
    async fn call(
        &self,
        fsed: &str,
        method: &'static str,
        params: Value,
    ) -> Result<Value, ApiError> {
        let link = self
            .links
            .iter()
            .find(|l| l.name == fsed)
            .ok_or_else(|| unreachable(fsed, "no such remote fsed is configured"))?;
        let calls = {
            let s = link.lock();
            match &s.calls {
                Some(tx) => tx.clone(),
                None => {
                    let why = s
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "not connected".into());
                    return Err(unreachable(fsed, &why));
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        calls
            .send(Outgoing {
                method,
                params,
                reply,
            })
            .await
            .map_err(|_| unreachable(fsed, "the link closed"))?;
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(unreachable(
                fsed,
                &format!("no answer within {} ms", self.timeout.as_millis()),
            )),
            Ok(Err(_)) => Err(unreachable(fsed, "the link broke during the operation")),
            Ok(Ok(Answer::Result(v))) => Ok(v),
            Ok(Ok(Answer::Error(mut e))) => {
                e.message = format!("fsed {fsed}: {}", e.message);
                if let Some(data) = e.data.as_mut().and_then(Value::as_object_mut) {
                    data.insert("fsed".into(), json!(fsed));
                }
                Err(ApiError(e))
            }
        }
    }

    /// The remote Vitale card `card` signs `challenge` (the proof of presence); the signature
    /// is verified here against the card's public key.
    pub async fn authenticate(
        &self,
        card: &RemoteCard,
        challenge: &[u8; 32],
    ) -> Result<[u8; 64], ApiError> {
        let vitale = card
            .vitale
            .as_ref()
            .ok_or_else(|| ApiError::new(api::CARD_ABSENT, "not a Vitale card", Some("vitale")))?;
        let v = self
            .call(
                &card.location.fsed,
                "cards.authenticate",
                json!({ "serial": vitale.serial, "challenge": hex::encode(challenge) }),
            )
            .await?;
        signature_of(
            &v,
            &vitale.public_key,
            challenge,
            "vitale",
            &card.location.fsed,
        )
    }

    /// The remote CPS `card` signs `message` under `request_id` (a repeat of the same request
    /// does not reach the card again); the signature is verified here.
    pub async fn sign(
        &self,
        card: &RemoteCard,
        message: &[u8],
        request_id: &str,
    ) -> Result<[u8; 64], ApiError> {
        let cps = card
            .cps
            .as_ref()
            .ok_or_else(|| ApiError::new(api::CARD_ABSENT, "not a CPS", Some("cps")))?;
        let v = self
            .call(
                &card.location.fsed,
                "cards.sign",
                json!({
                    "cps_serial": cps.holder.serial,
                    "message": hex::encode(message),
                    "request_id": request_id,
                }),
            )
            .await?;
        signature_of(&v, &cps.public_key, message, "cps", &card.location.fsed)
    }
}

/// The `signature` member of an answer, checked against the card's key.
fn signature_of(
    v: &Value,
    key: &[u8; 32],
    message: &[u8],
    field: &str,
    fsed: &str,
) -> Result<[u8; 64], ApiError> {
    let sig = v["signature"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| {
            ApiError::new(
                api::CARD_ERROR,
                format!("fsed {fsed} answered no 64-byte signature"),
                Some(field),
            )
        })?;
    if !verify_signature(key, message, &sig) {
        return Err(ApiError::new(
            api::CARD_ERROR,
            format!("fsed {fsed}: the card's signature does not verify with its public key"),
            Some(field),
        ));
    }
    Ok(sig)
}

#[cfg(test)]
mod tests;
