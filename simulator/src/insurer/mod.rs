//! The insurer simulator (`fse-sim insurer`): receives signed lots over AMQP
//! or from a spool directory, verifies each (DER, Merkle root, CPS
//! signature, every sheet's proof of presence), dedups by lot id and answers
//! an ARL — positive, or negative with the reason — and, when asked
//! (`--payments`), a payment return per lot: each acknowledged sheet paid its
//! AMO share, or refused.
//!
//! Knobs for test platforms ([`Knobs`]): a share of lots rejected, of
//! payments refused, of replies preceded by a malformed copy, every reply
//! sent twice, a reply delay and a slow consumer. Everything received is
//! kept for a report (`--report DIR`: `report.json` and a self-contained
//! `report.html` with a chart of lots and sheets over time and the
//! rejections by reason).
//!
//! Over AMQP it consumes its own durable quorum queue bound to
//! [`wire::EXCHANGE_AMO`](fse_formats::wire::EXCHANGE_AMO), answers on the default
//! exchange to the lot's `reply_to`, waits for the broker's confirm of the ARL and only then acks
//! the lot: a crash in between makes the broker redeliver the lot, and the
//! dedup answers it with the same ARL. It keeps its own reconnect loop
//! (lapin's automatic recovery is off). The broker URL may carry a password:
//! it is shown only with its user information masked.
//!
//! Every ARL and payment return goes out signed ([`sign_return`]) with the key
//! and certificate the test PKI makes for the insurer code it names
//! ([`crate::pki::TestPki::insurer_certificate`]).
//!
//! It also answers rights requests (rights online, ADRi: [`rights`]): over AMQP on the queue
//! `fsed.rights` (request/reply, `rights_amqp.rs`) and over the spool's `rights/` folder, from
//! the beneficiaries of the built-in Vitale profiles, signed as each one's organism; knobs for
//! latency, outage, stale answers, unknown beneficiaries, a wrong signer and a forged signature.
//!
//! Layout: `judge.rs` checks a lot; the [`Insurer`] here keeps what it answered, its knobs
//! and its counters; `returns.rs` prepares and signs ARLs and payment returns; `report.rs`
//! writes what was received; `spool.rs` and `amqp.rs` are the two transports; `cli.rs` the
//! command line; `samples.rs` builds the lots tests send.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use fse_formats::ack::{Arl, ArlStatus, PaymentReturn, Rejection};
use fse_formats::lot::{LotError, SignedLot};
use fse_formats::pki::TrustStore;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

mod amqp;
pub mod app_check;
mod attachments;
mod cli;
pub(crate) mod judge;
pub mod late;
pub mod partitions;
mod report;
mod returns;
pub mod rights;
mod rights_amqp;
mod samples;
mod spool;
#[cfg(test)]
mod tests;

pub use amqp::{run_amqp, AmqpInsurerConfig, InsurerKind};
pub use cli::{load_trust, run_cli, InsurerArgs};
pub use judge::answer_lot;
pub use report::{report_html, write_report};
pub use returns::{sign_return, sign_return_as};
pub use rights::RightsKnobs;
pub use rights_amqp::run_rights_amqp;
pub use samples::{sample_app_lot, sample_lot, sample_lot_by, sample_lot_with_dres};
pub use spool::{run_spool, spool_pass, SpoolPass};

/// Lot id of an ARL answering bytes that do not decode as a lot (the spool
/// and AMQP modes replace it with the file stem or the message id when known).
pub const UNKNOWN_LOT_ID: &str = "unknown";
/// Organism code the simulator answers as when none is given and its binding is a pattern.
pub const DEFAULT_INSURER: &str = "011751000";

/// Counters of what the insurer received and answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InsurerReport {
    /// Lots received, duplicates included.
    pub received: u64,
    /// Deliveries of a lot already answered.
    pub duplicates: u64,
    /// Positive ARLs.
    pub positive: u64,
    /// Negative ARLs.
    pub negative: u64,
    /// Sheets in the lots answered (duplicates not counted).
    pub sheets: u64,
    /// Rejections by code (lots and sheets).
    pub rejections: BTreeMap<String, u64>,
    /// Sheets paid in payment returns.
    pub paid: u64,
    /// Sheets refused in payment returns.
    pub refused: u64,
    /// Malformed replies sent on purpose (`--malformed-percent`).
    pub malformed: u64,
    /// DRE lots received (as an AMC), duplicates included.
    pub dre_lots: u64,
    /// DREs verified and accepted (as an AMC), duplicates not counted.
    pub dres: u64,
}

/// The test platform's knobs; all off by default.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// Refuse every sheet of the first N lots (code `TEST_REJECTED`).
    pub reject_first_lots: u64,
    /// Refuse every sheet of this share of lots, in percent (code `TEST_REJECTED`).
    pub reject_percent: u32,
    /// Send a payment return after each ARL that acknowledges sheets.
    pub payments: bool,
    /// Refuse this share of the sheets in payment returns, in percent (code `TEST_REFUSED`).
    pub refuse_payments_percent: u32,
    /// Precede this share of replies with a malformed copy, in percent.
    pub malformed_percent: u32,
    /// Wait this long before sending each reply (AMQP; the lot is taken at once).
    pub reply_delay: Duration,
    /// Wait this long before taking each lot, one at a time (AMQP).
    pub slow_consumer: Duration,
    /// Seed of the random draws (rates).
    pub seed: u64,
    /// Date each payment return this many working days after its ARL (`late`); `None`: the
    /// ARL's own time.
    pub pay_after_working_days: Option<u32>,
}

/// One lot as the report shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LotSeen {
    /// The lot id.
    pub lot_id: String,
    /// Milliseconds since the insurer started.
    pub at_ms: u64,
    /// Sheets it held.
    pub sheets: u64,
    /// Its ARL's status.
    pub status: ArlStatus,
    /// Its rejection codes.
    pub codes: Vec<String>,
}

/// An insurer: remembers every answer by lot id, so a lot delivered twice gets the same ARL.
pub struct Insurer {
    name: String,
    /// Answers each lot as its destination (an insurer bound to every destination).
    as_destination: bool,
    answered: HashMap<String, Arl>,
    answered_dre: std::collections::HashSet<String>,
    payments: HashMap<String, PaymentReturn>,
    report: InsurerReport,
    trust: Option<TrustStore>,
    knobs: Knobs,
    rng: rand::rngs::StdRng,
    started: Instant,
    lots: Vec<LotSeen>,
    /// The attachment references of the signed lots judged (in memory).
    attachment_refs: attachments::Remembered,
}

impl Insurer {
    /// An insurer answering as `name` (its organism code).
    pub fn new(name: &str) -> Insurer {
        Insurer {
            name: name.to_string(),
            as_destination: false,
            answered: HashMap::new(),
            answered_dre: Default::default(),
            payments: HashMap::new(),
            report: InsurerReport::default(),
            trust: None,
            knobs: Knobs::default(),
            rng: rand::rngs::StdRng::seed_from_u64(0),
            started: Instant::now(),
            lots: Vec::new(),
            attachment_refs: Default::default(),
        }
    }

    /// Refuses every sheet of the first `n` lots it judges (code `TEST_REJECTED`), whatever
    /// they hold: a test platform's way to drive a sender's correction and retransmission.
    pub fn rejecting_first_lots(mut self, n: u64) -> Insurer {
        self.knobs.reject_first_lots = n;
        self
    }

    /// Answers (and signs) each lot as the insurer it is addressed to, its destination, rather
    /// than as its own name: an insurer bound to every destination plays each of them.
    pub fn answering_as_each_destination(mut self) -> Insurer {
        self.as_destination = true;
        self
    }

    /// Sets every knob.
    pub fn with_knobs(mut self, knobs: Knobs) -> Insurer {
        self.rng = rand::rngs::StdRng::seed_from_u64(knobs.seed);
        self.knobs = knobs;
        self
    }

    /// The knobs in use.
    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    /// Checks every lot's signer certificate against `trust` (chain, dates, CRLs).
    pub fn with_trust(mut self, trust: TrustStore) -> Insurer {
        self.trust = Some(trust);
        self
    }

    fn draw(&mut self, percent: u32) -> bool {
        percent > 0 && self.rng.gen_range(0..100) < percent
    }

    /// Answers one delivery of a lot. A lot id already answered gets the
    /// stored ARL again, without being judged anew; bytes that do not decode
    /// are judged every time (they have no id to remember them by).
    pub fn receive(&mut self, bytes: &[u8]) -> Arl {
        self.report.received += 1;
        let decoded = SignedLot::from_der(bytes);
        if let Ok(lot) = &decoded {
            if let Some(previous) = self.answered.get(&lot.header.lot_id) {
                self.report.duplicates += 1;
                return previous.clone();
            }
        }
        let now = chrono::Utc::now().format("%Y%m%d%H%M%SZ").to_string();
        let known = decoded.is_ok();
        // Number and AMO share of each sheet, for the payment return.
        let sheets: Vec<(u64, u64)> = match &decoded {
            Ok(lot) => lot
                .entries
                .iter()
                .filter_map(|e| fse_formats::fse::CareSheet::from_der(&e.sheet).ok())
                .map(|s| (s.number, s.amounts.amo_cents))
                .collect(),
            Err(_) => Vec::new(),
        };
        let forced = known
            && if self.knobs.reject_first_lots > 0 {
                self.knobs.reject_first_lots -= 1;
                true
            } else {
                self.draw(self.knobs.reject_percent)
            };
        let name = match &decoded {
            Ok(lot) if self.as_destination => lot.header.destination.clone(),
            _ => self.name.clone(),
        };
        let header = decoded.as_ref().ok().map(|l| l.header.clone());
        let mut arl = judge::judge(decoded, &name, &now, self.trust.as_ref());
        // A lot refused whole (signature, certificate, root …) vouches for no document.
        if let Some(header) =
            header.filter(|_| arl.rejections.iter().all(|r| r.sheet_number.is_some()))
        {
            self.attachment_refs.remember(&header);
        }
        if forced {
            arl.status = ArlStatus::Negative;
            arl.rejections = sheets
                .iter()
                .map(|(n, _)| Rejection {
                    sheet_number: Some(*n),
                    code: "TEST_REJECTED".into(),
                    reason: "refused by the simulator (test knob)".into(),
                })
                .collect();
        }
        if known {
            self.answered.insert(arl.lot_id.clone(), arl.clone());
            self.report.sheets += sheets.len() as u64;
            if self.knobs.payments {
                self.payments_for(&arl, &sheets, &now);
            }
        }
        match arl.status {
            ArlStatus::Positive => self.report.positive += 1,
            ArlStatus::Negative => self.report.negative += 1,
        }
        for r in &arl.rejections {
            *self.report.rejections.entry(r.code.clone()).or_default() += 1;
        }
        self.lots.push(LotSeen {
            lot_id: arl.lot_id.clone(),
            at_ms: self.started.elapsed().as_millis() as u64,
            sheets: sheets.len() as u64,
            status: arl.status,
            codes: arl.rejections.iter().map(|r| r.code.clone()).collect(),
        });
        arl
    }

    /// The payment return of a lot answered, when payments are on and it acknowledged sheets
    /// (the same one at every call: a duplicate lot gets the same return again).
    pub fn payment_return(&self, lot_id: &str) -> Option<PaymentReturn> {
        self.payments.get(lot_id).cloned()
    }

    /// Takes one DRE lot (as an AMC): verifies it ([`fse_formats::dre_lot::DreLot::verify`],
    /// with the trust store when there is one) and counts its DREs once per lot and AMC.
    /// Returns the number of DREs, or the rejection code and reason (counted in the report).
    pub fn receive_dre(&mut self, bytes: &[u8]) -> Result<usize, (String, String)> {
        use fse_formats::dre_lot::DreLot;
        self.report.dre_lots += 1;
        let now = chrono::Utc::now().timestamp();
        let judged = DreLot::from_der(bytes)
            .map_err(|e| ("DRE_LOT_MALFORMED".to_string(), e.to_string()))
            .and_then(|lot| {
                let dres = lot.verify(self.trust.as_ref(), now).map_err(|e| {
                    let code = match e {
                        LotError::Signature => "DRE_LOT_SIGNATURE",
                        LotError::Certificate(_) => "DRE_LOT_CERTIFICATE",
                        LotError::Inclusion => "DRE_INCLUSION",
                        _ => "DRE_INVALID",
                    };
                    (code.to_string(), e.to_string())
                })?;
                Ok((format!("{}/{}", lot.lot_id, lot.amc), dres.len()))
            });
        match judged {
            Ok((key, n)) => {
                if self.answered_dre.insert(key) {
                    self.report.dres += n as u64;
                } else {
                    self.report.duplicates += 1;
                }
                Ok(n)
            }
            Err((code, reason)) => {
                *self.report.rejections.entry(code.clone()).or_default() += 1;
                Err((code, reason))
            }
        }
    }

    /// Whether the next reply is to be preceded by a malformed copy (counted when so).
    pub fn malformed_now(&mut self) -> bool {
        let due = self.draw(self.knobs.malformed_percent);
        if due {
            self.report.malformed += 1;
        }
        due
    }

    /// What was received so far.
    pub fn report(&self) -> InsurerReport {
        self.report.clone()
    }
}

/// Why the insurer stopped.
#[derive(Debug, thiserror::Error)]
pub enum InsurerError {
    /// File system.
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
    /// Broker.
    #[error("broker: {0}")]
    Amqp(String),
    /// Encoding an ARL failed.
    #[error("ARL encoding: {0}")]
    Encode(String),
    /// Bad options (a broker URL that does not parse, no mode given).
    #[error("{0}")]
    Usage(String),
}

/// Resolves once `stop` turns true, or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
