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
//! [`wire::EXCHANGE_AMO`], answers on the default exchange to the lot's
//! `reply_to`, waits for the broker's confirm of the ARL and only then acks
//! the lot: a crash in between makes the broker redeliver the lot, and the
//! dedup answers it with the same ARL. It keeps its own reconnect loop
//! (lapin's automatic recovery is off). The broker URL may carry a password:
//! it is shown only with its user information masked.
//!
//! Every ARL and payment return goes out signed ([`sign_return`]) with the key
//! and certificate the test PKI makes for the insurer code it names
//! ([`crate::pki::TestPki::insurer_certificate`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fse_formats::ack::{
    Arl, ArlStatus, Payment, PaymentOutcome, PaymentReturn, Rejection, ReturnContent, SignedReturn,
};
use fse_formats::der::DerError;
use fse_formats::lot::{LotError, SignedLot};
use fse_formats::pki::TrustStore;
use fse_formats::wire;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

/// Lot id of an ARL answering bytes that do not decode as a lot (the spool
/// and AMQP modes replace it with the file stem or the message id when known).
pub const UNKNOWN_LOT_ID: &str = "unknown";
/// Organism code the simulator answers as when none is given and its binding is a pattern.
pub const DEFAULT_INSURER: &str = "011751000";
/// Lots the AMQP consumer holds unacknowledged at most.
const PREFETCH: u16 = 16;
/// Longest wait for the broker: connection and topology, or one ARL's confirm.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// Spool polling period.
const SPOOL_POLL: Duration = Duration::from_millis(100);

/// Judges one lot: a positive ARL when it decodes and verifies, else a negative one with the reason.
///
/// `now` is the time of receipt, `YYYYMMDDHHMMSSZ`. Bytes that do not decode
/// get [`UNKNOWN_LOT_ID`], an all-zero root and the code `LOT_MALFORMED`.
pub fn answer_lot(bytes: &[u8], insurer: &str, now: &str) -> Arl {
    judge(SignedLot::from_der(bytes), insurer, now, None)
}

/// [`answer_lot`] on an already decoded lot. With a trust store, the lot must carry its
/// signer's certificate and the certificate must be valid at `now` (chain, dates, CRLs, key).
/// Every sheet of a lot that verifies is then re-priced (`rules::check_shares`): a sheet with
/// a wrong share is refused by number, with the field and the two figures.
fn judge(
    decoded: Result<SignedLot, DerError>,
    insurer: &str,
    now: &str,
    trust: Option<&TrustStore>,
) -> Arl {
    let arl = |lot_id: String, merkle_root: String, rejections: Vec<Rejection>| Arl {
        lot_id,
        merkle_root,
        status: if rejections.is_empty() {
            ArlStatus::Positive
        } else {
            ArlStatus::Negative
        },
        insurer: insurer.to_string(),
        received_at: now.to_string(),
        rejections,
    };
    let rejection = |sheet_number: Option<u64>, code: &str, reason: String| Rejection {
        sheet_number,
        code: code.to_string(),
        reason,
    };
    let lot = match decoded {
        Ok(lot) => lot,
        Err(e) => {
            return arl(
                UNKNOWN_LOT_ID.into(),
                hex::encode([0u8; 32]),
                vec![rejection(None, "LOT_MALFORMED", e.to_string())],
            )
        }
    };
    let root = hex::encode(lot.header.merkle_root);
    let verified = match trust {
        None => lot.verify(),
        Some(store) => match &lot.signer_certificate {
            None => Err(LotError::Certificate(
                "the lot does not carry its signer's certificate".into(),
            )),
            Some(cert) => {
                let at = chrono::NaiveDateTime::parse_from_str(now, "%Y%m%d%H%M%SZ")
                    .map(|t| t.and_utc().timestamp())
                    .unwrap_or_else(|_| chrono::Utc::now().timestamp());
                lot.verify_trusted(store, cert, at)
            }
        },
    };
    let rejections = match verified {
        Ok(sheets) => sheets
            .iter()
            .filter_map(|sheet| {
                fse_formats::rules::check_shares(sheet, fse_formats::rules::Tables::builtin())
                    .err()
                    .map(|e| rejection(Some(sheet.number), "SHEET_SHARES", e.to_string()))
            })
            .collect(),
        Err(e) => {
            let (code, sheet) = match &e {
                LotError::Der(_) => ("LOT_MALFORMED", None),
                LotError::Count { .. } => ("LOT_COUNT", None),
                LotError::Root => ("LOT_MERKLE_ROOT", None),
                LotError::Signature => ("LOT_SIGNATURE", None),
                LotError::Certificate(_) => ("LOT_CERTIFICATE", None),
                LotError::Inclusion => ("LOT_MERKLE_ROOT", None),
                LotError::Sheet { index, .. } => (
                    "SHEET_INVALID",
                    lot.entries
                        .get(*index)
                        .and_then(|en| fse_formats::fse::CareSheet::from_der(&en.sheet).ok())
                        .map(|s| s.number),
                ),
            };
            vec![rejection(sheet, code, e.to_string())]
        }
    };
    arl(lot.header.lot_id, root, rejections)
}

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

/// The DER of `content` signed as the insurer its `insurer` field names: the key of
/// [`crate::pki::insurer_key`], with the certificate the test PKI makes for that code (made
/// once per code and process).
pub fn sign_return(content: ReturnContent) -> Result<Vec<u8>, String> {
    static CERTIFICATES: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());
    let code = content.insurer().to_string();
    let cached = CERTIFICATES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&code)
        .cloned();
    let cert = match cached {
        Some(c) => c,
        None => {
            let c = crate::pki::TestPki::shared()?
                .insurer_certificate(&code)
                .map_err(|e| format!("insurer certificate of {code}: {e}"))?;
            CERTIFICATES
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(code.clone(), c.clone());
            c
        }
    };
    SignedReturn::sign(content, &crate::pki::insurer_key(&code), cert)
        .and_then(|s| s.to_der())
        .map_err(|e| format!("signed return encoding: {e}"))
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
        let mut arl = judge(decoded, &name, &now, self.trust.as_ref());
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

    /// Prepares the payment return of the sheets `arl` acknowledges (none when it refuses
    /// the whole lot): each paid its AMO share, or refused at the knob's rate.
    fn payments_for(&mut self, arl: &Arl, sheets: &[(u64, u64)], now: &str) {
        if arl.rejections.iter().any(|r| r.sheet_number.is_none()) {
            return;
        }
        let refused: std::collections::HashSet<u64> = arl
            .rejections
            .iter()
            .filter_map(|r| r.sheet_number)
            .collect();
        let mut payments = Vec::new();
        for (number, amo) in sheets.iter().filter(|(n, _)| !refused.contains(n)) {
            let outcome = if self.draw(self.knobs.refuse_payments_percent) {
                self.report.refused += 1;
                PaymentOutcome::Refused {
                    code: "TEST_REFUSED".into(),
                    reason: "payment refused by the simulator (test knob)".into(),
                }
            } else {
                self.report.paid += 1;
                PaymentOutcome::Paid { amount_cents: *amo }
            };
            payments.push(Payment {
                sheet_number: *number,
                outcome,
            });
        }
        if !payments.is_empty() {
            self.payments.insert(
                arl.lot_id.clone(),
                PaymentReturn {
                    lot_id: arl.lot_id.clone(),
                    insurer: arl.insurer.clone(),
                    issued_at: now.to_string(),
                    payments,
                },
            );
        }
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

    /// Everything received, as the JSON report: the counters, every lot (time, size,
    /// status, codes) and the lots and sheets per second.
    pub fn full_report(&self) -> serde_json::Value {
        let mut per_second: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for l in &self.lots {
            let e = per_second.entry(l.at_ms / 1000).or_default();
            e.0 += 1;
            e.1 += l.sheets;
        }
        serde_json::json!({
            "insurer": self.name,
            "summary": self.report,
            "timeline": per_second.iter().map(|(s, (lots, sheets))| serde_json::json!({"second": s, "lots": lots, "sheets": sheets})).collect::<Vec<_>>(),
            "lots": self.lots,
        })
    }
}

/// A self-contained HTML page (inline SVG, no script, nothing fetched) of a
/// [`Insurer::full_report`]: lots and sheets per second over time, and rejections by reason.
pub fn report_html(report: &serde_json::Value) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let timeline: Vec<(u64, u64, u64)> = report["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["second"].as_u64().unwrap_or(0),
                t["lots"].as_u64().unwrap_or(0),
                t["sheets"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let (w, h, pad) = (720.0_f64, 240.0_f64, 40.0_f64);
    let last = timeline.last().map_or(1, |t| t.0.max(1)) as f64;
    let top_sheets = timeline.iter().map(|t| t.2).max().unwrap_or(1).max(1) as f64;
    let top_lots = timeline.iter().map(|t| t.1).max().unwrap_or(1).max(1) as f64;
    let line = |pick: &dyn Fn(&(u64, u64, u64)) -> f64, top: f64| {
        timeline
            .iter()
            .map(|t| {
                let x = pad + (t.0 as f64 / last) * (w - 2.0 * pad);
                let y = h - pad - pick(t) / top * (h - 2.0 * pad);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let sheets_line = line(&|t| t.2 as f64, top_sheets);
    let lots_line = line(&|t| t.1 as f64, top_lots);
    let reasons: Vec<(String, u64)> = report["summary"]["rejections"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect();
    let top_reason = reasons.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let bars: String = reasons
        .iter()
        .enumerate()
        .map(|(i, (code, n))| {
            let y = 10.0 + i as f64 * 26.0;
            let len = *n as f64 / top_reason * 420.0;
            format!(
                "<text x=\"0\" y=\"{:.0}\">{}</text><rect x=\"200\" y=\"{:.0}\" width=\"{len:.1}\" height=\"18\" fill=\"#c0392b\"/><text x=\"{:.0}\" y=\"{:.0}\">{n}</text>",
                y + 14.0,
                esc(code),
                y,
                205.0 + len,
                y + 14.0
            )
        })
        .collect();
    let s = &report["summary"];
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fse-sim insurer report</title>\n\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>\n\
<h1>Insurer {name}: what was received</h1>\n\
<table><tr><th>lots received</th><th>duplicates</th><th>positive ARLs</th><th>negative ARLs</th><th>sheets</th><th>paid</th><th>refused</th><th>malformed replies sent</th></tr>\n\
<tr><td>{received}</td><td>{duplicates}</td><td>{positive}</td><td>{negative}</td><td>{sheets}</td><td>{paid}</td><td>{refused}</td><td>{malformed}</td></tr></table>\n\
<h2>Lots and sheets per second</h2>\n\
<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"lots and sheets per second\">\
<line x1=\"{pad}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\" stroke=\"#333\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{base}\" stroke=\"#333\"/>\
<polyline id=\"sheets\" fill=\"none\" stroke=\"#2471a3\" stroke-width=\"2\" points=\"{sheets_line}\"/>\
<polyline id=\"lots\" fill=\"none\" stroke=\"#28b463\" stroke-width=\"2\" points=\"{lots_line}\"/>\
<text x=\"{pad}\" y=\"20\" fill=\"#2471a3\">sheets/s (max {top_sheets})</text><text x=\"300\" y=\"20\" fill=\"#28b463\">lots/s (max {top_lots})</text>\
<text x=\"{pad}\" y=\"{label}\">0 s</text><text x=\"{right}\" y=\"{label}\" text-anchor=\"end\">{last} s</text></svg>\n\
<h2>Rejections by reason</h2>\n\
<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"{bars_h}\" role=\"img\" aria-label=\"rejections by reason\">{bars}</svg>\n\
{none}</body></html>\n",
        name = esc(report["insurer"].as_str().unwrap_or_default()),
        received = s["received"],
        duplicates = s["duplicates"],
        positive = s["positive"],
        negative = s["negative"],
        sheets = s["sheets"],
        paid = s["paid"],
        refused = s["refused"],
        malformed = s["malformed"],
        base = h - pad,
        right = w - pad,
        label = h - pad + 16.0,
        bars_h = 20 + reasons.len() * 26,
        none = if reasons.is_empty() { "<p>No rejection.</p>\n" } else { "" },
    )
}

/// Writes `report.json` and `report.html` into `dir`.
pub fn write_report(insurer: &Insurer, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = insurer.full_report();
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&json).map_err(std::io::Error::other)?,
    )?;
    std::fs::write(dir.join("report.html"), report_html(&json))
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

/// `url` with its user information masked, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Writes `bytes` to `dir/name` atomically and durably (temporary name, fsync, rename, fsync dir).
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// What one pass over the spool outbox did.
#[derive(Debug, Default)]
pub struct SpoolPass {
    /// Lot files answered (ARL written, lot file removed).
    pub answered: usize,
    /// Lot files left in place, with why (unreadable, ARL not written, not removable).
    pub failed: Vec<(PathBuf, String)>,
}

/// One pass over the spool outbox: answers every `*.lot` file into the inbox
/// as `<file stem>.arl` (and `<file stem>.pay` with payments on), then removes
/// it; takes every `*.dre` file (DRE lots) as their AMC would, and removes it.
///
/// Only an unreadable outbox is an error; a lot file that cannot be read,
/// answered or removed is left in place, reported in [`SpoolPass::failed`],
/// and tried again at the next pass. Hidden files (the sender's temporary
/// names) are not touched.
pub fn spool_pass(
    insurer: &mut Insurer,
    outbox: &Path,
    inbox: &Path,
) -> Result<SpoolPass, InsurerError> {
    let mut lots: Vec<PathBuf> = std::fs::read_dir(outbox)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == wire::SPOOL_LOT_SUFFIX || x == wire::SPOOL_DRE_LOT_SUFFIX)
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.is_file()
        })
        .collect();
    lots.sort();
    let mut pass = SpoolPass::default();
    for path in lots {
        let result = if path
            .extension()
            .is_some_and(|x| x == wire::SPOOL_DRE_LOT_SUFFIX)
        {
            take_dre_file(insurer, &path)
        } else {
            answer_file(insurer, &path, inbox)
        };
        match result {
            Ok(()) => pass.answered += 1,
            Err(e) => pass.failed.push((path, e)),
        }
    }
    Ok(pass)
}

/// Takes one DRE lot file of the outbox, as the AMC it is addressed to: verified, counted,
/// removed (no reply).
fn take_dre_file(insurer: &mut Insurer, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    match insurer.receive_dre(&bytes) {
        Ok(n) => tracing::info!(file = %path.display(), dres = n, "spool DRE lot accepted"),
        Err((code, why)) => {
            tracing::warn!(file = %path.display(), %code, reason = %why, "spool DRE lot refused")
        }
    }
    std::fs::remove_file(path).map_err(|e| format!("taken but not removed: {e}"))
}

/// Answers one lot file of the outbox.
fn answer_file(insurer: &mut Insurer, path: &Path, inbox: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    let mut arl = insurer.receive(&bytes);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if arl.lot_id == UNKNOWN_LOT_ID {
        arl.lot_id = stem.clone();
    }
    let der = sign_return(ReturnContent::Arl(arl.clone()))?;
    write_atomic(inbox, &format!("{stem}.{}", wire::SPOOL_ARL_SUFFIX), &der)
        .map_err(|e| format!("ARL not written: {e}"))?;
    if let Some(p) = insurer.payment_return(&arl.lot_id) {
        let der = sign_return(ReturnContent::Payment(p))?;
        write_atomic(
            inbox,
            &format!("{stem}.{}", wire::SPOOL_PAYMENT_SUFFIX),
            &der,
        )
        .map_err(|e| format!("payment return not written: {e}"))?;
    }
    tracing::info!(lot = %arl.lot_id, status = ?arl.status, "spool lot answered");
    std::fs::remove_file(path).map_err(|e| format!("answered but not removed: {e}"))
}

/// Resolves once `stop` turns true, or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves a spool until `stop` turns true: polls `outbox` every 100 ms for
/// lot files and answers them into `inbox` (see [`spool_pass`]).
///
/// Fails only when the directories cannot be created; later file-system
/// errors are logged (once each) and retried.
pub async fn run_spool(
    outbox: PathBuf,
    inbox: PathBuf,
    insurer: Arc<Mutex<Insurer>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), InsurerError> {
    std::fs::create_dir_all(&outbox)?;
    std::fs::create_dir_all(&inbox)?;
    let mut reported: HashMap<PathBuf, String> = HashMap::new();
    loop {
        let (o, i, ins) = (outbox.clone(), inbox.clone(), Arc::clone(&insurer));
        let pass = tokio::task::spawn_blocking(move || {
            let mut guard = ins.lock().unwrap_or_else(|p| p.into_inner());
            spool_pass(&mut guard, &o, &i)
        })
        .await
        .map_err(|e| InsurerError::Io(std::io::Error::other(e.to_string())))
        .and_then(|r| r);
        let failures: HashMap<PathBuf, String> = match pass {
            Ok(pass) => pass.failed.into_iter().collect(),
            Err(e) => HashMap::from([(outbox.clone(), e.to_string())]),
        };
        for (path, why) in &failures {
            if reported.get(path) != Some(why) {
                tracing::warn!(path = %path.display(), reason = %why, "spool: left in place, retrying");
            }
        }
        reported = failures;
        tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            _ = tokio::time::sleep(SPOOL_POLL) => {}
        }
    }
}

/// AMQP settings of the insurer.
#[derive(Clone)]
pub struct AmqpInsurerConfig {
    /// Broker URL (credentials allowed; never shown unmasked).
    pub url: String,
    /// Routing key pattern of the lots it takes (`#`: every destination).
    pub binding: String,
    /// Its name in the ARLs.
    pub insurer: String,
    /// Sends every ARL this many times (1; more to test a sender's idempotence).
    pub copies: u32,
    /// Takes FSE lots (AMO) or DRE lots (AMC).
    pub kind: InsurerKind,
}

/// Which lots an insurer takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InsurerKind {
    /// The mandatory insurer: FSE lots from [`wire::EXCHANGE_AMO`], answered with ARLs.
    #[default]
    Amo,
    /// A supplementary insurer paid directly: DRE lots from [`wire::EXCHANGE_AMC`], verified
    /// and counted (no reply).
    Amc,
}

impl InsurerKind {
    /// `amo` or `amc`.
    pub fn as_str(self) -> &'static str {
        match self {
            InsurerKind::Amo => "amo",
            InsurerKind::Amc => "amc",
        }
    }

    /// Its exchange.
    pub fn exchange(self) -> &'static str {
        match self {
            InsurerKind::Amo => wire::EXCHANGE_AMO,
            InsurerKind::Amc => wire::EXCHANGE_AMC,
        }
    }
}

impl std::fmt::Debug for AmqpInsurerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpInsurerConfig")
            .field("url", &redact(&self.url))
            .field("binding", &self.binding)
            .field("insurer", &self.insurer)
            .finish()
    }
}

fn amqp_err(what: &str) -> impl Fn(lapin::Error) -> InsurerError + '_ {
    move |e| InsurerError::Amqp(format!("{what}: {e}"))
}

/// Consumes lots until `stop` turns true, reconnecting with backoff (200 ms
/// doubling to 5 s); `ready` is sent once its queue is declared, bound and
/// consumed. Fails only on a URL that does not parse.
pub async fn run_amqp(
    cfg: AmqpInsurerConfig,
    insurer: Arc<Mutex<Insurer>>,
    mut stop: watch::Receiver<bool>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), InsurerError> {
    // Parsed here so that a bad URL fails at once, and because the parser's
    // message quotes the whole URL, password included.
    let uri: AMQPUri = cfg
        .url
        .parse()
        .map_err(|_| InsurerError::Usage(format!("invalid broker URL {}", redact(&cfg.url))))?;
    let mut ready = ready;
    let mut backoff = Duration::from_millis(200);
    loop {
        let session = amqp_session(&cfg, uri.clone(), &insurer, &mut stop, &mut ready);
        match session.await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(broker = %redact(&cfg.url), error = %e, "insurer lost the broker; reconnecting")
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's worth of consuming; `Ok` when stopped.
async fn amqp_session(
    cfg: &AmqpInsurerConfig,
    uri: AMQPUri,
    insurer: &Arc<Mutex<Insurer>>,
    stop: &mut watch::Receiver<bool>,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), InsurerError> {
    let queue = wire::insurer_queue(cfg.kind.as_str(), &cfg.binding);
    let setup = async {
        let props =
            ConnectionProperties::default().with_connection_name(format!("fse-sim {queue}").into());
        let conn = Connection::connect_uri(uri, props)
            .await
            .map_err(amqp_err("connect"))?;
        let channel = conn.create_channel().await.map_err(amqp_err("channel"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp_err("confirm_select"))?;
        channel
            .exchange_declare(
                cfg.kind.exchange().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp_err("exchange_declare"))?;
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .map_err(amqp_err("queue_declare"))?;
        channel
            .queue_bind(
                queue.as_str().into(),
                cfg.kind.exchange().into(),
                cfg.binding.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_err("queue_bind"))?;
        let prefetch = if insurer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .knobs()
            .slow_consumer
            .is_zero()
        {
            PREFETCH
        } else {
            1
        };
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(amqp_err("basic_qos"))?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "fse-sim-insurer".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_err("basic_consume"))?;
        Ok::<_, InsurerError>((conn, channel, consumer))
    };
    let (conn, channel, mut consumer) = tokio::select! {
        _ = stopped(stop) => return Ok(()),
        s = tokio::time::timeout(BROKER_TIMEOUT, setup) => s
            .map_err(|_| InsurerError::Amqp("no answer from the broker in time".into()))??,
    };
    tracing::info!(broker = %redact(&cfg.url), %queue, binding = %cfg.binding, "insurer consuming");
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
    loop {
        let delivery = tokio::select! {
            _ = stopped(stop) => {
                let _ = conn.close(200, "insurer stopping".into()).await;
                return Ok(());
            }
            d = consumer.next() => d,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(amqp_err("consume")(e)),
            None => return Err(InsurerError::Amqp("consumer closed".into())),
        };
        if cfg.kind == InsurerKind::Amc {
            let judged = insurer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .receive_dre(&delivery.data);
            match judged {
                Ok(n) => tracing::info!(dres = n, "DRE lot accepted"),
                Err((code, why)) => tracing::warn!(%code, reason = %why, "DRE lot refused"),
            }
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(amqp_err("ack"))?;
            continue;
        }
        let (slow, delay) = {
            let g = insurer.lock().unwrap_or_else(|p| p.into_inner());
            (g.knobs().slow_consumer, g.knobs().reply_delay)
        };
        if !slow.is_zero() {
            tokio::select! {
                _ = stopped(stop) => {
                    let _ = conn.close(200, "insurer stopping".into()).await;
                    return Ok(());
                }
                _ = tokio::time::sleep(slow) => {}
            }
        }
        let (arl, payment, malformed) = {
            let mut g = insurer.lock().unwrap_or_else(|p| p.into_inner());
            let mut arl = g.receive(&delivery.data);
            if arl.lot_id == UNKNOWN_LOT_ID {
                if let Some(id) = delivery.properties.message_id() {
                    arl.lot_id = id.to_string();
                }
            }
            let payment = g.payment_return(&arl.lot_id);
            (arl, payment, g.malformed_now())
        };
        tracing::info!(lot = %arl.lot_id, status = ?arl.status, redelivered = delivery.redelivered, "lot answered");
        match delivery.properties.reply_to().clone() {
            Some(reply_to) => {
                let mut replies = Vec::new();
                if malformed {
                    // A reply the sender cannot read: it must refuse it and lose nothing.
                    replies.push((wire::TYPE_ARL, vec![0x30, 0x03, 0x02, 0x01]));
                }
                replies.push((
                    wire::TYPE_ARL,
                    sign_return(ReturnContent::Arl(arl.clone())).map_err(InsurerError::Encode)?,
                ));
                if let Some(p) = payment {
                    replies.push((
                        wire::TYPE_PAYMENT,
                        sign_return(ReturnContent::Payment(p)).map_err(InsurerError::Encode)?,
                    ));
                }
                let reply = Reply {
                    channel: channel.clone(),
                    reply_to: reply_to.to_string(),
                    lot_id: arl.lot_id.clone(),
                    copies: cfg.copies.max(1),
                };
                if delay.is_zero() {
                    reply.send(&replies).await?;
                } else {
                    // The lot is taken now; its replies follow after the delay.
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if let Err(e) = reply.send(&replies).await {
                            tracing::warn!(lot = %reply.lot_id, error = %e, "delayed reply not sent");
                        }
                    });
                }
            }
            None => tracing::warn!(lot = %arl.lot_id, "lot without reply_to: no ARL sent"),
        }
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map_err(amqp_err("ack"))?;
    }
}

/// Where and how the replies to one lot go.
struct Reply {
    channel: lapin::Channel,
    reply_to: String,
    lot_id: String,
    copies: u32,
}

impl Reply {
    /// Publishes each reply (`type`, body) `copies` times on the default exchange to the
    /// sender's return queue, persistent, `message_id` = lot id, and waits for each confirm.
    async fn send(&self, replies: &[(&str, Vec<u8>)]) -> Result<(), InsurerError> {
        for (kind, der) in replies {
            for copy in 0..self.copies {
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(self.lot_id.as_str().into())
                    .with_type((*kind).into())
                    .with_content_type(wire::CONTENT_TYPE_DER.into());
                let publish = async {
                    self.channel
                        .basic_publish(
                            "".into(),
                            self.reply_to.as_str().into(),
                            BasicPublishOptions {
                                // The first copy only: the extra copies are as a careless
                                // insurer or a redelivery would send them.
                                mandatory: copy == 0,
                                ..Default::default()
                            },
                            der,
                            props,
                        )
                        .await
                        .map_err(amqp_err("reply publish"))?
                        .await
                        .map_err(amqp_err("reply confirm"))
                };
                let confirm = tokio::time::timeout(BROKER_TIMEOUT, publish)
                    .await
                    .map_err(|_| InsurerError::Amqp("no confirm of the reply in time".into()))??;
                match confirm {
                    Confirmation::Ack(None) => {}
                    // The sender's return queue does not exist: nobody to answer. The
                    // sender resends the lot later and gets this same reply then.
                    Confirmation::Ack(Some(_)) => tracing::warn!(
                        lot = %self.lot_id, reply_to = %self.reply_to,
                        "reply unroutable: the sender's return queue does not exist"
                    ),
                    Confirmation::Nack(_) | Confirmation::NotRequested => {
                        return Err(InsurerError::Amqp(
                            "reply not confirmed by the broker".into(),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// `fse-sim insurer` options.
#[derive(Debug, Clone, clap::Args)]
pub struct InsurerArgs {
    /// Broker URL (AMQP mode), e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    #[arg(long, conflicts_with_all = ["spool_outbox", "spool_inbox"])]
    pub amqp: Option<String>,
    /// Routing key pattern of the lots taken (AMQP mode): an organism code (AMO) or an AMC
    /// number (AMC), or `#` for all.
    #[arg(long, default_value = "#")]
    pub binding: String,
    /// Take FSE lots as the AMO (answered with ARLs), or DRE lots as an AMC paid directly.
    #[arg(long, value_enum, default_value = "amo")]
    pub kind: InsurerKind,
    /// The sender's outbox, read for lots (spool mode).
    #[arg(long, requires = "spool_inbox")]
    pub spool_outbox: Option<PathBuf>,
    /// The sender's inbox, written with ARLs (spool mode).
    #[arg(long, requires = "spool_outbox")]
    pub spool_inbox: Option<PathBuf>,
    /// Organism code of the insurer in its ARLs [default: the binding when it
    /// is a plain organism code, else 011751000].
    #[arg(long)]
    pub insurer: Option<String>,
    /// Trust directory (`root.pem`, `ca.pem`, `crl.pem`, as `fse-sim pki` writes): every lot's
    /// signer certificate is checked against it.
    #[arg(long)]
    pub trust_dir: Option<PathBuf>,
    /// Send every ARL twice (AMQP mode), to test that the sender applies returns once.
    #[arg(long)]
    pub duplicate_replies: bool,
    /// Refuse every sheet of the first N lots received (code TEST_REJECTED), to test a
    /// sender's correction and retransmission.
    #[arg(long, default_value_t = 0)]
    pub reject_lots: u64,
    /// Refuse every sheet of this share of lots, in percent (code TEST_REJECTED).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub reject_percent: u32,
    /// Send a payment return after each ARL: every acknowledged sheet paid its AMO share.
    #[arg(long)]
    pub payments: bool,
    /// Refuse this share of sheets in the payment returns, in percent (code TEST_REFUSED).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub refuse_payments_percent: u32,
    /// Precede this share of replies with a malformed one, in percent (AMQP mode).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub malformed_percent: u32,
    /// Send each reply this many milliseconds after taking its lot (AMQP mode).
    #[arg(long, default_value_t = 0)]
    pub reply_delay_ms: u64,
    /// Take lots one at a time, this many milliseconds each (AMQP mode): a slow consumer.
    #[arg(long, default_value_t = 0)]
    pub slow_consumer_ms: u64,
    /// Seed of the knobs' random draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write `report.json` and `report.html` (everything received) into this directory on stop.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

impl InsurerArgs {
    /// The name the insurer answers as.
    pub fn insurer_name(&self) -> String {
        match &self.insurer {
            Some(name) => name.clone(),
            None if !self.binding.is_empty()
                && self.binding.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                self.binding.clone()
            }
            None => DEFAULT_INSURER.to_string(),
        }
    }
}

/// Runs `fse-sim insurer` until SIGINT or SIGTERM: prints `insurer ready` on
/// stdout once it takes lots (AMQP: its queue declared, bound and consumed),
/// and its [`InsurerReport`] as one JSON line when it stops without error.
pub async fn run_cli(args: InsurerArgs) -> Result<(), InsurerError> {
    let name = args.insurer_name();
    // Bound to a pattern and given no name, it plays every insurer it takes lots for.
    let plays_each = args.insurer.is_none() && name != args.binding;
    let mut judge = Insurer::new(&name).with_knobs(Knobs {
        reject_first_lots: args.reject_lots,
        reject_percent: args.reject_percent,
        payments: args.payments,
        refuse_payments_percent: args.refuse_payments_percent,
        malformed_percent: args.malformed_percent,
        reply_delay: Duration::from_millis(args.reply_delay_ms),
        slow_consumer: Duration::from_millis(args.slow_consumer_ms),
        seed: args.seed,
    });
    if let Some(dir) = &args.trust_dir {
        judge = judge.with_trust(load_trust(dir)?);
    }
    if plays_each {
        judge = judge.answering_as_each_destination();
    }
    let insurer = Arc::new(Mutex::new(judge));
    let report_dir = args.report.clone();
    let (stop_tx, stop) = watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut task = match (args.amqp, args.spool_outbox, args.spool_inbox) {
        (Some(url), _, _) => {
            let cfg = AmqpInsurerConfig {
                url,
                binding: args.binding,
                insurer: name,
                copies: if args.duplicate_replies { 2 } else { 1 },
                kind: args.kind,
            };
            tokio::spawn(run_amqp(cfg, Arc::clone(&insurer), stop, Some(ready_tx)))
        }
        (None, Some(outbox), Some(inbox)) => {
            std::fs::create_dir_all(&outbox)?;
            std::fs::create_dir_all(&inbox)?;
            let _ = ready_tx.send(());
            tokio::spawn(run_spool(outbox, inbox, Arc::clone(&insurer), stop))
        }
        _ => {
            return Err(InsurerError::Usage(
                "give --amqp URL, or --spool-outbox DIR and --spool-inbox DIR".into(),
            ))
        }
    };
    let signal = crate::wait_for_signal();
    tokio::pin!(signal);
    let mut ready = ready_rx;
    let mut announced = false;
    let result = loop {
        tokio::select! {
            r = &mut ready, if !announced => {
                announced = true;
                if r.is_ok() {
                    println!("insurer ready");
                }
            }
            r = &mut task => break r,
            _ = &mut signal => {
                let _ = stop_tx.send(true);
                break task.await;
            }
        }
    };
    result.map_err(|e| InsurerError::Amqp(e.to_string()))??;
    let guard = insurer.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = &report_dir {
        write_report(&guard, dir)?;
    }
    println!(
        "{}",
        serde_json::to_string(&guard.report()).unwrap_or_default()
    );
    Ok(())
}

/// Reads a trust directory: `root.pem` required, `ca.pem` and `crl.pem` when present.
pub fn load_trust(dir: &Path) -> Result<TrustStore, InsurerError> {
    let mut store = TrustStore::new();
    for (file, required, crl) in [
        ("root.pem", true, false),
        ("ca.pem", false, false),
        ("crl.pem", false, true),
    ] {
        let path = dir.join(file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) if !required => continue,
            Err(e) => return Err(InsurerError::Usage(format!("{}: {e}", path.display()))),
        };
        let added = if crl {
            store.add_crls(&bytes).map(|_| ())
        } else {
            store.add_certificates(&bytes).map(|_| ())
        };
        added.map_err(|e| InsurerError::Usage(format!("{}: {e}", path.display())))?;
    }
    Ok(store)
}

/// Builds a signed lot of `n` secured sheets from the default cards, as fsed would (for tests of insurers and transports).
pub fn sample_lot(lot_id: &str, n: u64) -> SignedLot {
    let (holder, situations) = crate::profiles::default_cps_holder();
    lot_signed_by(&holder, &situations, None, lot_id, n, None)
}

/// [`sample_lot`] signed by the CPS of `profile`, carrying its certificate from the test PKI
/// (an expired or revoked card's lot, for insurers' checks).
pub fn sample_lot_by(profile: &str, lot_id: &str, n: u64) -> Result<SignedLot, String> {
    certified_lot(profile, lot_id, n, None)
}

/// [`sample_lot_by`] of the default CPS where every even-numbered sheet is in tiers payant AMC
/// with `amc` paying directly: its DREs make a [`fse_formats::dre_lot::DreLot`].
pub fn sample_lot_with_dres(lot_id: &str, n: u64, amc: &str) -> Result<SignedLot, String> {
    certified_lot(crate::profiles::DEFAULT_CPS, lot_id, n, Some(amc))
}

/// A lot signed by the CPS of `profile`, carrying its certificate from the test PKI.
fn certified_lot(
    profile: &str,
    lot_id: &str,
    n: u64,
    amc: Option<&str>,
) -> Result<SignedLot, String> {
    let crate::profiles::Profile::Cps(c) =
        crate::profiles::Profile::load(profile).map_err(|e| e.to_string())?
    else {
        return Err(format!("{profile} is not a CPS profile"));
    };
    let (holder, situations) = c.holder();
    let key = crate::profiles::test_key(&holder.serial);
    let certificate = crate::pki::TestPki::shared()?
        .cps_certificate(&holder, &key.verifying_key().to_bytes())
        .map_err(|e| e.to_string())?;
    Ok(lot_signed_by(
        &holder,
        &situations,
        Some(certificate),
        lot_id,
        n,
        amc,
    ))
}

fn lot_signed_by(
    holder: &fse_formats::cards::CpsHolder,
    situations: &[fse_formats::cards::Situation],
    certificate: Option<Vec<u8>>,
    lot_id: &str,
    n: u64,
    amc: Option<&str>,
) -> SignedLot {
    use ed25519_dalek::Signer;
    use fse_formats::fse::{CareSheet, Mode, Presence, SheetBeneficiary, SheetPractitioner};
    use fse_formats::lot::{leaves, LotEntry, LotHeader};

    let vitale = crate::profiles::default_vitale_data();
    let (cps_key, vit_key) = (
        crate::profiles::test_key(&holder.serial),
        crate::profiles::test_key(&vitale.serial),
    );
    let b = &vitale.beneficiaries[0];
    let entries: Vec<LotEntry> = (1..=n)
        .map(|number| {
            let mut sheet = CareSheet::sample(number);
            if let (Some(amc), 0) = (amc, number % 2) {
                // The AMC pays its share (the ticket modérateur) directly: a DRE goes to it.
                sheet.tiers_payant.amc = true;
                sheet.tiers_payant.amc_number = Some(amc.to_string());
                sheet.amounts.amc_cents = 900;
                sheet.amounts.patient_cents = 200;
                sheet.amounts.due_cents = 200;
            }
            sheet.practitioner = SheetPractitioner {
                national_id: holder.national_id.clone(),
                surname: holder.surname.clone(),
                given_name: holder.given_name.clone(),
                profession: holder.profession.clone(),
                specialty: holder.specialty.clone(),
                billing_number: situations[0].billing_number.clone(),
                sector: situations[0].sector,
                cps_serial: holder.serial.clone(),
            };
            sheet.beneficiary = SheetBeneficiary {
                nir: b.nir.clone(),
                surname: b.surname.clone(),
                given_name: b.given_name.clone(),
                birth_date: b.birth_date.clone(),
                rank: b.rank,
                organism: vitale.organism.code(),
            };
            sheet.mode = Mode::Secured;
            sheet.degraded_reason = None;
            let challenge = sheet.presence_challenge().unwrap_or_default();
            sheet.presence = Some(Presence {
                vitale_serial: vitale.serial.clone(),
                public_key: hex::encode(vit_key.verifying_key().to_bytes()),
                signature: hex::encode(vit_key.sign(&challenge).to_bytes()),
            });
            LotEntry {
                salt: [number as u8; 16],
                sheet: sheet.to_der().unwrap_or_default(),
            }
        })
        .collect();
    let header = LotHeader {
        lot_id: lot_id.into(),
        number: 1,
        practitioner_id: holder.national_id.clone(),
        destination: vitale.organism.code(),
        sheet_count: n,
        merkle_root: fse_formats::merkle::root(&leaves(&entries)),
        closed_at: "20261122120000Z".into(),
        cps_serial: holder.serial.clone(),
        signer_key: cps_key.verifying_key().to_bytes(),
    };
    let signature = cps_key
        .sign(&header.to_der().unwrap_or_default())
        .to_bytes();
    SignedLot {
        header,
        signature,
        signer_certificate: certificate,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ARL in `der`, after checking it is signed by `insurer` under the test PKI.
    fn signed_arl(der: &[u8], insurer: &str) -> Arl {
        let pki = crate::pki::TestPki::shared().unwrap();
        let mut trust = TrustStore::new();
        trust.add_certificates(pki.root_pem().as_bytes()).unwrap();
        trust.add_certificates(pki.ca_pem().as_bytes()).unwrap();
        let signed = SignedReturn::from_der(der).unwrap();
        let now = chrono::Utc::now().timestamp();
        assert_eq!(signed.verify(&trust, now).unwrap(), insurer);
        match signed.content {
            ReturnContent::Arl(a) => a,
            other => panic!("not an ARL: {other:?}"),
        }
    }

    #[test]
    fn an_insurer_playing_every_destination_signs_as_each() {
        let lot = sample_lot("L-dest", 1);
        let mut ins = Insurer::new(DEFAULT_INSURER)
            .answering_as_each_destination()
            .with_knobs(Knobs {
                payments: true,
                ..Knobs::default()
            });
        let arl = ins.receive(&lot.to_der().unwrap());
        assert_eq!(arl.insurer, lot.header.destination);
        let der = sign_return(ReturnContent::Arl(arl)).unwrap();
        signed_arl(&der, &lot.header.destination);
        let pay = ins.payment_return("L-dest").unwrap();
        assert_eq!(pay.insurer, lot.header.destination);
    }

    #[test]
    fn a_valid_lot_gets_a_positive_arl_echoing_its_root() {
        let lot = sample_lot("L1", 3);
        let arl = answer_lot(&lot.to_der().unwrap(), "ins", "20261122120000Z");
        assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
        assert_eq!(arl.lot_id, "L1");
        assert_eq!(arl.insurer, "ins");
        assert_eq!(arl.received_at, "20261122120000Z");
        assert_eq!(arl.merkle_root, hex::encode(lot.header.merkle_root));
        assert!(arl.rejections.is_empty());
        assert_eq!(Arl::from_der(&arl.to_der().unwrap()).unwrap(), arl);
    }

    #[test]
    fn tampered_forged_and_malformed_lots_are_refused_with_their_reason() {
        let lot = sample_lot("L2", 3);
        let mut t = lot.clone();
        let last = t.entries[1].sheet.len() - 1;
        t.entries[1].sheet[last] ^= 1;
        let arl = answer_lot(&t.to_der().unwrap(), "i", "t");
        assert_eq!(
            (
                arl.status,
                arl.rejections[0].code.as_str(),
                arl.lot_id.as_str()
            ),
            (ArlStatus::Negative, "LOT_MERKLE_ROOT", "L2")
        );
        assert_eq!(arl.rejections[0].sheet_number, None);
        let mut t = lot.clone();
        t.signature[0] ^= 1;
        assert_eq!(
            answer_lot(&t.to_der().unwrap(), "i", "t").rejections[0].code,
            "LOT_SIGNATURE"
        );
        let mut t = lot.clone();
        t.header.sheet_count = 4;
        assert_eq!(
            answer_lot(&t.to_der().unwrap(), "i", "t").rejections[0].code,
            "LOT_COUNT"
        );
        let arl = answer_lot(b"\x30\x03garbage", "i", "t");
        assert_eq!(
            (arl.status, arl.rejections[0].code.as_str()),
            (ArlStatus::Negative, "LOT_MALFORMED")
        );
        assert_eq!(
            (arl.lot_id.as_str(), arl.merkle_root.as_str()),
            (UNKNOWN_LOT_ID, "0".repeat(64).as_str())
        );
        // Every negative ARL still encodes.
        assert!(arl.to_der().is_ok());
    }

    #[test]
    fn a_sheet_that_fails_its_proof_is_refused_by_number() {
        use ed25519_dalek::Signer;
        let mut lot = sample_lot("L5", 3);
        let mut sheet = fse_formats::fse::CareSheet::from_der(&lot.entries[1].sheet).unwrap();
        sheet.amounts.total_cents += 1; // no longer what the Vitale card signed
        lot.entries[1].sheet = sheet.to_der().unwrap();
        lot.header.merkle_root = fse_formats::merkle::root(&fse_formats::lot::leaves(&lot.entries));
        let (holder, _) = crate::profiles::default_cps_holder();
        let key = crate::profiles::test_key(&holder.serial);
        lot.signature = key.sign(&lot.header.to_der().unwrap()).to_bytes();
        let arl = answer_lot(&lot.to_der().unwrap(), "i", "t");
        assert_eq!(arl.status, ArlStatus::Negative);
        assert_eq!(arl.rejections[0].code, "SHEET_INVALID", "{arl:?}");
        assert_eq!(arl.rejections[0].sheet_number, Some(sheet.number));
    }

    fn test_trust() -> TrustStore {
        let dir = tempfile::tempdir().unwrap();
        crate::pki::TestPki::shared()
            .unwrap()
            .write(dir.path(), time::OffsetDateTime::now_utc())
            .unwrap();
        load_trust(dir.path()).unwrap()
    }

    #[test]
    fn with_a_trust_store_expired_and_revoked_cards_and_wrong_shares_are_refused() {
        let mut ins = Insurer::new("i").with_trust(test_trust());
        let good = sample_lot_by("cps-medecin-generaliste", "L-ok", 3).unwrap();
        let arl = ins.receive(&good.to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
        for (profile, words) in [
            ("cps-expired", "expired"),
            ("cps-revoked", "revocation list"),
        ] {
            let lot = sample_lot_by(profile, &format!("L-{profile}"), 2).unwrap();
            let arl = ins.receive(&lot.to_der().unwrap());
            assert_eq!(arl.status, ArlStatus::Negative);
            assert_eq!(arl.rejections[0].code, "LOT_CERTIFICATE", "{arl:?}");
            assert!(
                arl.rejections[0].reason.contains(words),
                "{profile}: {arl:?}"
            );
        }
        // A lot without its signer's certificate cannot be checked: refused.
        let arl = ins.receive(&sample_lot("L-bare", 1).to_der().unwrap());
        assert_eq!(arl.rejections[0].code, "LOT_CERTIFICATE", "{arl:?}");

        // A sheet whose AMO share is wrong, re-signed as a careless sender would: the lot
        // verifies, the insurer re-prices and refuses that sheet by number, naming the field.
        use ed25519_dalek::Signer;
        let mut lot = sample_lot_by("cps-medecin-generaliste", "L-shares", 3).unwrap();
        let vit_key = crate::profiles::test_key(&crate::profiles::default_vitale_data().serial);
        let mut sheet = fse_formats::fse::CareSheet::from_der(&lot.entries[1].sheet).unwrap();
        sheet.acts[0].amo_cents += 100;
        sheet.amounts.amo_cents += 100;
        sheet.amounts.patient_cents -= 100;
        sheet.amounts.due_cents -= 100;
        let signature = hex::encode(
            vit_key
                .sign(&sheet.presence_challenge().unwrap())
                .to_bytes(),
        );
        sheet.presence.as_mut().unwrap().signature = signature;
        lot.entries[1].sheet = sheet.to_der().unwrap();
        lot.header.merkle_root = fse_formats::merkle::root(&fse_formats::lot::leaves(&lot.entries));
        let cps_key = crate::profiles::test_key("CPS-0001");
        lot.signature = cps_key.sign(&lot.header.to_der().unwrap()).to_bytes();
        let arl = ins.receive(&lot.to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Negative);
        assert_eq!(arl.rejections.len(), 1, "{arl:?}");
        assert_eq!(arl.rejections[0].code, "SHEET_SHARES");
        assert_eq!(arl.rejections[0].sheet_number, Some(sheet.number));
        assert!(
            arl.rejections[0].reason.contains("acts[0].amo_cents"),
            "{arl:?}"
        );
    }

    #[test]
    fn the_reject_knob_refuses_every_sheet_of_the_first_lots_only() {
        let mut ins = Insurer::new("i").rejecting_first_lots(1);
        let arl = ins.receive(&sample_lot("L-1", 2).to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Negative);
        let numbers: Vec<Option<u64>> = arl.rejections.iter().map(|r| r.sheet_number).collect();
        assert_eq!(numbers, vec![Some(1), Some(2)]);
        assert!(arl.rejections.iter().all(|r| r.code == "TEST_REJECTED"));
        // The same lot again: the same answer; a new lot: judged on its merits.
        assert_eq!(ins.receive(&sample_lot("L-1", 2).to_der().unwrap()), arl);
        let arl = ins.receive(&sample_lot("L-2", 2).to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Positive);
    }

    #[test]
    fn a_lot_delivered_twice_gets_the_same_answer() {
        let mut ins = Insurer::new("i");
        let der = sample_lot("L3", 2).to_der().unwrap();
        let a = ins.receive(&der);
        let b = ins.receive(&der);
        assert_eq!(a, b);
        // Same id, other content: the stored answer, not a new judgement.
        let mut forged = sample_lot("L3", 2);
        forged.signature[0] ^= 1;
        assert_eq!(ins.receive(&forged.to_der().unwrap()), a);
        ins.receive(b"junk");
        ins.receive(b"junk");
        assert_eq!(
            ins.report(),
            InsurerReport {
                received: 5,
                duplicates: 2,
                positive: 1,
                negative: 2,
                sheets: 2,
                rejections: ins.report().rejections,
                ..Default::default()
            }
        );
    }

    #[test]
    fn knobs_reject_lots_at_their_rate_and_pay_or_refuse_the_rest() {
        let mut ins = Insurer::new("i").with_knobs(Knobs {
            payments: true,
            refuse_payments_percent: 100,
            ..Default::default()
        });
        let lot = sample_lot("L-pay", 3);
        let arl = ins.receive(&lot.to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Positive);
        let ret = ins.payment_return("L-pay").expect("a payment return");
        assert_eq!(ret.payments.len(), 3);
        assert!(ret.payments.iter().all(
            |p| matches!(&p.outcome, PaymentOutcome::Refused { code, .. } if code == "TEST_REFUSED")
        ));
        // A duplicate delivery gets the same return again.
        ins.receive(&lot.to_der().unwrap());
        assert_eq!(ins.payment_return("L-pay"), Some(ret));

        let mut ins = Insurer::new("i").with_knobs(Knobs {
            payments: true,
            reject_percent: 100,
            ..Default::default()
        });
        let arl = ins.receive(&sample_lot("L-rej", 2).to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Negative);
        assert!(arl.rejections.iter().all(|r| r.code == "TEST_REJECTED"));
        assert_eq!(
            ins.payment_return("L-rej"),
            None,
            "nothing acknowledged, nothing paid"
        );
        assert_eq!(ins.report().rejections["TEST_REJECTED"], 2);

        let mut ins = Insurer::new("i").with_knobs(Knobs {
            payments: true,
            ..Default::default()
        });
        let lot = sample_lot("L-ok", 2);
        ins.receive(&lot.to_der().unwrap());
        let amo: Vec<u64> = lot
            .entries
            .iter()
            .map(|e| {
                fse_formats::fse::CareSheet::from_der(&e.sheet)
                    .unwrap()
                    .amounts
                    .amo_cents
            })
            .collect();
        let paid: Vec<u64> = ins
            .payment_return("L-ok")
            .unwrap()
            .payments
            .iter()
            .map(|p| match p.outcome {
                PaymentOutcome::Paid { amount_cents } => amount_cents,
                PaymentOutcome::Refused { .. } => panic!("refused"),
            })
            .collect();
        assert_eq!(paid, amo, "each sheet is paid its AMO share");
        assert_eq!(ins.report().paid, 2);
    }

    #[test]
    fn dre_lots_carry_their_sheets_proofs_and_an_amc_checks_them() {
        use fse_formats::dre_lot::DreLot;
        let lot = sample_lot_with_dres("L-dre", 5, "88888888").unwrap();
        // The FSE lot itself is still valid for the AMO, shares included.
        let arl = Insurer::new("i")
            .with_trust(test_trust())
            .receive(&lot.to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
        let dre_lots = DreLot::from_signed(&lot).unwrap();
        assert_eq!(dre_lots.len(), 1, "one AMC");
        // Built from the DREs made with the sheets (what fsed stores), the same DRE lots.
        let made: Vec<Option<Vec<u8>>> = lot
            .entries
            .iter()
            .map(|e| {
                let sheet = fse_formats::fse::CareSheet::from_der(&e.sheet).unwrap();
                fse_formats::dre::Dre::from_sheet(&sheet)
                    .unwrap()
                    .map(|d| d.to_der().unwrap())
            })
            .collect();
        assert_eq!(made.iter().flatten().count(), 2);
        let with_dres = DreLot::from_signed_with_dres(&lot, &made).unwrap();
        assert_eq!(with_dres.len(), 1);
        assert_eq!(
            with_dres[0].to_der().unwrap(),
            dre_lots[0].to_der().unwrap()
        );
        assert!(DreLot::from_signed_with_dres(&lot, &made[1..]).is_err());
        let d = &dre_lots[0];
        assert_eq!(
            (d.amc.as_str(), d.entries.len()),
            ("88888888", 2),
            "sheets 2 and 4"
        );
        let der = d.to_der().unwrap();
        assert_eq!(&DreLot::from_der(&der).unwrap(), d);
        let now = chrono::Utc::now().timestamp();
        let dres = d.verify(Some(&test_trust()), now).unwrap();
        assert_eq!(
            dres.iter().map(|x| x.sheet_number).collect::<Vec<_>>(),
            vec![2, 4]
        );
        assert!(dres.iter().all(|x| x.amc_cents == 900));

        // A DRE that does not match its sheet, a sheet swapped, a wrong AMC: refused.
        let mut bad = d.clone();
        let mut dre = fse_formats::dre::Dre::from_der(&bad.entries[0].dre).unwrap();
        dre.amc_cents += 100;
        bad.entries[0].dre = dre.to_der().unwrap();
        assert!(matches!(bad.verify(None, now), Err(LotError::Sheet { .. })));
        let mut bad = d.clone();
        bad.entries[0].sheet = lot.entries[0].sheet.clone();
        assert!(matches!(bad.verify(None, now), Err(LotError::Inclusion)));
        let mut bad = d.clone();
        bad.amc = "77777777".into();
        assert!(bad.verify(None, now).is_err());
        let mut bad = d.clone();
        bad.signature[0] ^= 1;
        assert!(matches!(bad.verify(None, now), Err(LotError::Signature)));

        let mut amc = Insurer::new("88888888").with_trust(test_trust());
        assert_eq!(amc.receive_dre(&der), Ok(2));
        assert_eq!(
            amc.receive_dre(&der),
            Ok(2),
            "a duplicate is accepted again"
        );
        let err = amc.receive_dre(b"junk").unwrap_err();
        assert_eq!(err.0, "DRE_LOT_MALFORMED");
        let r = amc.report();
        assert_eq!((r.dre_lots, r.dres, r.duplicates), (3, 2, 1));
        // A lot without DREs gives none.
        assert!(DreLot::from_signed(&sample_lot("L-none", 3))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_report_shows_lots_over_time_and_rejections_by_reason() {
        let mut ins = Insurer::new("011751000");
        ins.receive(&sample_lot("L-a", 2).to_der().unwrap());
        ins.receive(b"junk");
        let json = ins.full_report();
        assert_eq!(json["summary"]["received"], 2);
        assert_eq!(json["lots"].as_array().unwrap().len(), 2);
        assert_eq!(json["timeline"][0]["sheets"], 2);
        assert_eq!(json["summary"]["rejections"]["LOT_MALFORMED"], 1);
        let html = report_html(&json);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<polyline id=\"sheets\""));
        assert!(html.contains(">LOT_MALFORMED</text>"));
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
        let dir = tempfile::tempdir().unwrap();
        write_report(&ins, dir.path()).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(back, json);
        assert!(dir.path().join("report.html").exists());
    }

    #[test]
    fn spool_answers_every_lot_file() {
        let dir = tempfile::tempdir().unwrap();
        let (out, inb) = (dir.path().join("out"), dir.path().join("in"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&inb).unwrap();
        std::fs::write(out.join("L4.lot"), sample_lot("L4", 1).to_der().unwrap()).unwrap();
        std::fs::write(out.join("bad.lot"), b"junk").unwrap();
        std::fs::write(out.join(".L6.lot.tmp"), b"half written").unwrap();
        std::fs::write(out.join("notes.txt"), b"not a lot").unwrap();
        std::fs::create_dir(out.join("dir.lot")).unwrap();
        let mut ins = Insurer::new("i");
        let pass = spool_pass(&mut ins, &out, &inb).unwrap();
        assert_eq!((pass.answered, pass.failed.len()), (2, 0));
        let good = signed_arl(&std::fs::read(inb.join("L4.arl")).unwrap(), "i");
        assert_eq!(good.status, ArlStatus::Positive);
        let bad = signed_arl(&std::fs::read(inb.join("bad.arl")).unwrap(), "i");
        assert_eq!(
            (bad.lot_id.as_str(), bad.status),
            ("bad", ArlStatus::Negative)
        );
        let mut left: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".L6.lot.tmp", "dir.lot", "notes.txt"]);
        let mut arls: Vec<String> = std::fs::read_dir(&inb)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        arls.sort();
        assert_eq!(arls, ["L4.arl", "bad.arl"], "no temporary file left");
    }

    #[test]
    fn a_lot_whose_arl_cannot_be_written_stays_in_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("L7.lot"), sample_lot("L7", 1).to_der().unwrap()).unwrap();
        let missing_inbox = dir.path().join("no-such-inbox");
        let mut ins = Insurer::new("i");
        let pass = spool_pass(&mut ins, &out, &missing_inbox).unwrap();
        assert_eq!((pass.answered, pass.failed.len()), (0, 1));
        assert!(out.join("L7.lot").exists());
        // Once the inbox exists the lot is answered, with the same ARL.
        std::fs::create_dir_all(&missing_inbox).unwrap();
        assert_eq!(
            spool_pass(&mut ins, &out, &missing_inbox).unwrap().answered,
            1
        );
        assert_eq!(ins.report().duplicates, 1);
        assert!(spool_pass(&mut ins, &dir.path().join("gone"), &missing_inbox).is_err());
    }

    #[tokio::test]
    async fn spool_mode_serves_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (out, inb) = (dir.path().join("out"), dir.path().join("in"));
        let ins = Arc::new(Mutex::new(Insurer::new("i")));
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run_spool(out.clone(), inb.clone(), Arc::clone(&ins), stop));
        while !out.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        write_atomic(&out, "L8.lot", &sample_lot("L8", 2).to_der().unwrap()).unwrap();
        let arl_path = inb.join("L8.arl");
        tokio::time::timeout(Duration::from_secs(10), async {
            while !arl_path.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        let arl = Arl::from_der(&std::fs::read(&arl_path).unwrap());
        assert!(arl.is_err(), "an ARL travels signed, never bare");
        let arl = SignedReturn::from_der(&std::fs::read(&arl_path).unwrap()).unwrap();
        let ReturnContent::Arl(arl) = arl.content else {
            panic!("not an ARL")
        };
        assert_eq!(
            (arl.lot_id.as_str(), arl.status),
            ("L8", ArlStatus::Positive)
        );
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ins.lock().unwrap().report().positive, 1);
    }

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        let cfg = AmqpInsurerConfig {
            url: "amqp://u:s3cret@h/".into(),
            binding: "#".into(),
            insurer: "i".into(),
            copies: 1,
            kind: InsurerKind::Amo,
        };
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn an_unparsable_url_fails_at_once_without_its_password() {
        let cfg = AmqpInsurerConfig {
            url: "amqp://u:s3cret@[::1".into(),
            binding: "#".into(),
            insurer: "i".into(),
            copies: 1,
            kind: InsurerKind::Amo,
        };
        let (_stop_tx, stop) = watch::channel(false);
        let ins = Arc::new(Mutex::new(Insurer::new("i")));
        let err = run_amqp(cfg, ins, stop, None).await.unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn the_insurer_answers_as_its_binding_when_it_is_an_organism() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: InsurerArgs,
        }
        let args = |binding: &str, insurer: Option<&str>| {
            let mut a = <Cli as clap::Parser>::parse_from(["insurer", "--binding", binding]).a;
            a.insurer = insurer.map(Into::into);
            a
        };
        assert_eq!(args("017510001", None).insurer_name(), "017510001");
        assert_eq!(args("#", None).insurer_name(), DEFAULT_INSURER);
        assert_eq!(args("0175.*", None).insurer_name(), DEFAULT_INSURER);
        assert_eq!(args("#", Some("x")).insurer_name(), "x");
    }

    /// The RabbitMQ broker the tests run against (started by `tests/run`).
    const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    /// A 9-digit organism code of its own for each test run.
    fn unique_binding() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!(
            "9{:08}",
            (nanos ^ std::process::id().rotate_left(16)) % 100_000_000
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn amqp_lots_are_answered_on_their_reply_to_with_a_confirm() {
        let binding = unique_binding();
        let ins = Arc::new(Mutex::new(Insurer::new(&binding)));
        let (stop_tx, stop) = watch::channel(false);
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let cfg = AmqpInsurerConfig {
            url: URL.into(),
            binding: binding.clone(),
            insurer: binding.clone(),
            copies: 1,
            kind: InsurerKind::Amo,
        };
        let task = tokio::spawn(run_amqp(cfg, Arc::clone(&ins), stop, Some(ready_tx)));
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .unwrap()
            .unwrap();

        // The sender's side: a temporary reply queue, lots published with reply_to.
        let conn = Connection::connect(URL, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let reply = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let reply = reply.name().clone();
        let mut arls = ch
            .basic_consume(
                reply.clone(),
                "test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let publish = |body: Vec<u8>, id: &str, reply_to: Option<&lapin::types::ShortString>| {
            let mut props = BasicProperties::default()
                .with_message_id(id.into())
                .with_type(wire::TYPE_LOT.into());
            if let Some(r) = reply_to {
                props = props.with_reply_to(r.clone());
            }
            let ch = ch.clone();
            let binding = binding.clone();
            async move {
                let confirm = ch
                    .basic_publish(
                        wire::EXCHANGE_AMO.into(),
                        binding.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        props,
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                assert_eq!(confirm, Confirmation::Ack(None), "routed to the insurer");
            }
        };
        let mut next_arl = async || {
            let d = tokio::time::timeout(Duration::from_secs(20), arls.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(
                d.properties.kind().as_ref().unwrap().as_str(),
                wire::TYPE_ARL
            );
            assert_eq!(d.properties.delivery_mode(), &Some(2));
            assert_eq!(
                d.properties.content_type().as_ref().unwrap().as_str(),
                wire::CONTENT_TYPE_DER
            );
            let arl = signed_arl(&d.data, &binding);
            assert_eq!(
                d.properties.message_id().as_ref().unwrap().as_str(),
                arl.lot_id
            );
            arl
        };

        let lot = sample_lot(&format!("LOT-{binding}"), 2);
        let der = lot.to_der().unwrap();
        // A lot without reply_to is taken (acked) but has nobody to answer.
        publish(der.clone(), &lot.header.lot_id, None).await;
        publish(der.clone(), &lot.header.lot_id, Some(&reply)).await;
        let first = next_arl().await;
        assert_eq!(
            (first.lot_id.as_str(), first.status, first.insurer.as_str()),
            (
                lot.header.lot_id.as_str(),
                ArlStatus::Positive,
                binding.as_str()
            )
        );
        assert_eq!(first.merkle_root, hex::encode(lot.header.merkle_root));
        // Sent again: the identical ARL.
        publish(der.clone(), &lot.header.lot_id, Some(&reply)).await;
        assert_eq!(next_arl().await, first);
        // Malformed: negative, named after the message id.
        publish(b"junk".to_vec(), "LOT-BAD", Some(&reply)).await;
        let bad = next_arl().await;
        assert_eq!(
            (
                bad.lot_id.as_str(),
                bad.status,
                bad.rejections[0].code.as_str()
            ),
            ("LOT-BAD", ArlStatus::Negative, "LOT_MALFORMED")
        );

        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let report = ins.lock().unwrap().report();
        assert_eq!(
            (
                report.received,
                report.duplicates,
                report.positive,
                report.negative
            ),
            (4, 2, 1, 1)
        );
        // Every lot was acked: the insurer's queue is empty; remove it.
        let purged = ch
            .queue_delete(
                wire::insurer_queue("amo", &binding).as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(purged, 0, "no lot left unacknowledged");
        let _ = conn.close(200, "done".into()).await;
    }
}
