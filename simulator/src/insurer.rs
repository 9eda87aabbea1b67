//! The insurer simulator (`fse-sim insurer`): receives signed lots over AMQP
//! or from a spool directory, verifies each (DER, Merkle root, CPS
//! signature, every sheet's proof of presence), dedups by lot id and answers
//! an ARL — positive, or negative with the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::ack::{Arl, ArlStatus, Rejection};
use fse_formats::lot::{LotError, SignedLot};
use fse_formats::wire;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::watch;

/// Judges one lot: a positive ARL when it decodes and verifies, else a negative one with the reason.
pub fn answer_lot(bytes: &[u8], insurer: &str, now: &str) -> Arl {
    let negative =
        |lot_id: String, root: String, sheet_number: Option<u64>, code: &str, reason: String| Arl {
            lot_id,
            merkle_root: root,
            status: ArlStatus::Negative,
            insurer: insurer.to_string(),
            received_at: now.to_string(),
            rejections: vec![Rejection {
                sheet_number,
                code: code.into(),
                reason,
            }],
        };
    let lot = match SignedLot::from_der(bytes) {
        Ok(l) => l,
        Err(e) => {
            return negative(
                "unknown".into(),
                hex::encode([0u8; 32]),
                None,
                "LOT_MALFORMED",
                e.to_string(),
            )
        }
    };
    let id = lot.header.lot_id.clone();
    let root = hex::encode(lot.header.merkle_root);
    match lot.verify() {
        Ok(_) => Arl {
            lot_id: id,
            merkle_root: root,
            status: ArlStatus::Positive,
            insurer: insurer.into(),
            received_at: now.into(),
            rejections: vec![],
        },
        Err(e) => {
            let (code, sheet) = match &e {
                LotError::Der(_) => ("LOT_MALFORMED", None),
                LotError::Count { .. } => ("LOT_COUNT", None),
                LotError::Root => ("LOT_MERKLE_ROOT", None),
                LotError::Signature => ("LOT_SIGNATURE", None),
                LotError::Sheet { index, .. } => (
                    "SHEET_INVALID",
                    lot.entries
                        .get(*index)
                        .and_then(|en| fse_formats::fse::CareSheet::from_der(&en.sheet).ok())
                        .map(|s| s.number),
                ),
            };
            negative(id, root, sheet, code, e.to_string())
        }
    }
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
}

/// An insurer: remembers every answer by lot id, so a lot delivered twice gets the same ARL.
pub struct Insurer {
    name: String,
    answered: HashMap<String, Arl>,
    report: InsurerReport,
}

impl Insurer {
    /// An insurer answering as `name` (its organism code).
    pub fn new(name: &str) -> Insurer {
        Insurer {
            name: name.to_string(),
            answered: HashMap::new(),
            report: InsurerReport::default(),
        }
    }

    /// Answers one delivery of a lot.
    pub fn receive(&mut self, bytes: &[u8]) -> Arl {
        self.report.received += 1;
        let now = chrono::Utc::now().format("%Y%m%d%H%M%SZ").to_string();
        let arl = answer_lot(bytes, &self.name, &now);
        if arl.lot_id != "unknown" {
            if let Some(previous) = self.answered.get(&arl.lot_id) {
                self.report.duplicates += 1;
                return previous.clone();
            }
            self.answered.insert(arl.lot_id.clone(), arl.clone());
        }
        match arl.status {
            ArlStatus::Positive => self.report.positive += 1,
            ArlStatus::Negative => self.report.negative += 1,
        }
        arl
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

/// One pass over the spool outbox: answers every `*.lot` file into the inbox, then removes it.
pub fn spool_pass(
    insurer: &mut Insurer,
    outbox: &Path,
    inbox: &Path,
) -> Result<usize, InsurerError> {
    let mut lots: Vec<PathBuf> = std::fs::read_dir(outbox)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == wire::SPOOL_LOT_SUFFIX)
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    lots.sort();
    for path in &lots {
        let bytes = std::fs::read(path)?;
        let mut arl = insurer.receive(&bytes);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if arl.lot_id == "unknown" {
            arl.lot_id = stem.clone();
        }
        let der = arl
            .to_der()
            .map_err(|e| InsurerError::Encode(e.to_string()))?;
        write_atomic(inbox, &format!("{stem}.{}", wire::SPOOL_ARL_SUFFIX), &der)?;
        std::fs::remove_file(path)?;
    }
    Ok(lots.len())
}

/// Serves a spool until `stop` turns true.
pub async fn run_spool(
    outbox: PathBuf,
    inbox: PathBuf,
    insurer: Arc<Mutex<Insurer>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), InsurerError> {
    std::fs::create_dir_all(&outbox)?;
    std::fs::create_dir_all(&inbox)?;
    loop {
        {
            let (o, i, ins) = (outbox.clone(), inbox.clone(), Arc::clone(&insurer));
            tokio::task::spawn_blocking(move || {
                let mut guard = ins.lock().unwrap_or_else(|p| p.into_inner());
                spool_pass(&mut guard, &o, &i)
            })
            .await
            .map_err(|e| InsurerError::Io(std::io::Error::other(e.to_string())))??;
        }
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// AMQP settings of the insurer.
#[derive(Debug, Clone)]
pub struct AmqpInsurerConfig {
    /// Broker URL.
    pub url: String,
    /// Routing key pattern of the lots it takes (`#`: every destination).
    pub binding: String,
    /// Its name in the ARLs.
    pub insurer: String,
}

fn amqp_err(e: lapin::Error) -> InsurerError {
    InsurerError::Amqp(e.to_string())
}

/// Consumes lots until `stop` turns true, reconnecting with backoff; `ready` is sent once consuming.
pub async fn run_amqp(
    cfg: AmqpInsurerConfig,
    insurer: Arc<Mutex<Insurer>>,
    mut stop: watch::Receiver<bool>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), InsurerError> {
    let mut ready = ready;
    let mut backoff = Duration::from_millis(200);
    loop {
        match amqp_session(&cfg, &insurer, &mut stop, &mut ready).await {
            Ok(()) => return Ok(()),
            Err(e) => tracing::warn!(error = %e, "insurer lost the broker; reconnecting"),
        }
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn amqp_session(
    cfg: &AmqpInsurerConfig,
    insurer: &Arc<Mutex<Insurer>>,
    stop: &mut watch::Receiver<bool>,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), InsurerError> {
    let conn = Connection::connect(&cfg.url, ConnectionProperties::default())
        .await
        .map_err(amqp_err)?;
    let channel = conn.create_channel().await.map_err(amqp_err)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp_err)?;
    channel
        .exchange_declare(
            wire::EXCHANGE_AMO.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(amqp_err)?;
    let queue = wire::insurer_queue("amo", &cfg.binding);
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
        .map_err(amqp_err)?;
    channel
        .queue_bind(
            queue.as_str().into(),
            wire::EXCHANGE_AMO.into(),
            cfg.binding.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp_err)?;
    channel
        .basic_qos(16, BasicQosOptions::default())
        .await
        .map_err(amqp_err)?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "fse-sim-insurer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp_err)?;
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
    loop {
        let delivery = tokio::select! {
            _ = stop.changed() => {
                let _ = conn.close(200, "insurer stopping".into()).await;
                return Ok(());
            }
            d = consumer.next() => d,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(amqp_err(e)),
            None => return Err(InsurerError::Amqp("consumer closed".into())),
        };
        let arl = insurer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .receive(&delivery.data);
        match delivery.properties.reply_to().clone() {
            Some(reply_to) => {
                let der = arl
                    .to_der()
                    .map_err(|e| InsurerError::Encode(e.to_string()))?;
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(arl.lot_id.as_str().into())
                    .with_type(wire::TYPE_ARL.into())
                    .with_content_type(wire::CONTENT_TYPE_DER.into());
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        reply_to,
                        BasicPublishOptions::default(),
                        &der,
                        props,
                    )
                    .await
                    .map_err(amqp_err)?
                    .await
                    .map_err(amqp_err)?;
                if !confirm.is_ack() {
                    return Err(InsurerError::Amqp("ARL not confirmed by the broker".into()));
                }
            }
            None => tracing::warn!(lot = %arl.lot_id, "lot without reply_to: no ARL sent"),
        }
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map_err(amqp_err)?;
    }
}

/// `fse-sim insurer` options.
#[derive(Debug, Clone, clap::Args)]
pub struct InsurerArgs {
    /// Broker URL (AMQP mode).
    #[arg(long, conflicts_with_all = ["spool_outbox", "spool_inbox"])]
    pub amqp: Option<String>,
    /// Routing key pattern of the lots taken (AMQP mode).
    #[arg(long, default_value = "#")]
    pub binding: String,
    /// The sender's outbox, read for lots (spool mode).
    #[arg(long, requires = "spool_inbox")]
    pub spool_outbox: Option<PathBuf>,
    /// The sender's inbox, written with ARLs (spool mode).
    #[arg(long, requires = "spool_outbox")]
    pub spool_inbox: Option<PathBuf>,
    /// Name of the insurer in its ARLs.
    #[arg(long, default_value = "fse-sim-insurer")]
    pub insurer: String,
}

/// Runs `fse-sim insurer` until SIGINT or SIGTERM; prints `insurer ready` once it takes lots.
pub async fn run_cli(args: InsurerArgs) -> Result<(), InsurerError> {
    let insurer = Arc::new(Mutex::new(Insurer::new(&args.insurer)));
    let (stop_tx, stop) = watch::channel(false);
    let task = match (args.amqp, args.spool_outbox, args.spool_inbox) {
        (Some(url), _, _) => {
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let cfg = AmqpInsurerConfig {
                url,
                binding: args.binding,
                insurer: args.insurer,
            };
            let task = tokio::spawn(run_amqp(cfg, Arc::clone(&insurer), stop, Some(ready_tx)));
            let _ = ready_rx.await;
            task
        }
        (None, Some(outbox), Some(inbox)) => {
            tokio::spawn(run_spool(outbox, inbox, Arc::clone(&insurer), stop))
        }
        _ => {
            return Err(InsurerError::Amqp(
                "give --amqp URL, or --spool-outbox DIR and --spool-inbox DIR".into(),
            ))
        }
    };
    println!("insurer ready");
    crate::wait_for_signal().await;
    let _ = stop_tx.send(true);
    let result = task.await.map_err(|e| InsurerError::Amqp(e.to_string()))?;
    let report = insurer.lock().unwrap_or_else(|p| p.into_inner()).report();
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    result
}

/// Builds a signed lot of `n` secured sheets from the default cards, as fsed would (for tests of insurers and transports).
pub fn sample_lot(lot_id: &str, n: u64) -> SignedLot {
    use ed25519_dalek::Signer;
    use fse_formats::fse::{
        Act, Amounts, CareSheet, Mode, Presence, SheetBeneficiary, SheetPractitioner,
    };
    use fse_formats::lot::{leaves, LotEntry, LotHeader};

    let (holder, situations) = crate::profiles::default_cps_holder();
    let vitale = crate::profiles::default_vitale_data();
    let (cps_key, vit_key) = (
        crate::profiles::test_key(&holder.serial),
        crate::profiles::test_key(&vitale.serial),
    );
    let b = &vitale.beneficiaries[0];
    let entries: Vec<LotEntry> = (1..=n)
        .map(|number| {
            let mut sheet = CareSheet {
                number,
                created_at: "20261122101500Z".into(),
                practitioner: SheetPractitioner {
                    national_id: holder.national_id.clone(),
                    surname: holder.surname.clone(),
                    given_name: holder.given_name.clone(),
                    profession: holder.profession.clone(),
                    specialty: holder.specialty.clone(),
                    billing_number: situations[0].billing_number.clone(),
                    sector: situations[0].sector,
                    cps_serial: holder.serial.clone(),
                },
                beneficiary: SheetBeneficiary {
                    nir: b.nir.clone(),
                    surname: b.surname.clone(),
                    given_name: b.given_name.clone(),
                    birth_date: b.birth_date.clone(),
                    rank: b.rank,
                    organism: vitale.organism.code(),
                },
                acts: vec![Act {
                    code: "G".into(),
                    coefficient: 100,
                    quantity: 1,
                    date: "20261122".into(),
                    fee_cents: 3000,
                }],
                amounts: Amounts {
                    total_cents: 3000,
                    base_cents: 3000,
                    amo_rate: 70,
                    amo_cents: 1900,
                    pf_cents: 200,
                    patient_cents: 1100,
                },
                mode: Mode::Secured,
                presence: None,
            };
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
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_lot_gets_a_positive_arl_echoing_its_root() {
        let lot = sample_lot("L1", 3);
        let arl = answer_lot(&lot.to_der().unwrap(), "ins", "20261122120000Z");
        assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
        assert_eq!(arl.lot_id, "L1");
        assert_eq!(arl.merkle_root, hex::encode(lot.header.merkle_root));
    }

    #[test]
    fn tampered_forged_and_malformed_lots_are_refused_with_their_reason() {
        let lot = sample_lot("L2", 3);
        let mut t = lot.clone();
        let last = t.entries[1].sheet.len() - 1;
        t.entries[1].sheet[last] ^= 1;
        assert_eq!(
            answer_lot(&t.to_der().unwrap(), "i", "t").rejections[0].code,
            "LOT_MERKLE_ROOT"
        );
        let mut t = lot.clone();
        t.signature[0] ^= 1;
        assert_eq!(
            answer_lot(&t.to_der().unwrap(), "i", "t").rejections[0].code,
            "LOT_SIGNATURE"
        );
        let arl = answer_lot(b"\x30\x03garbage", "i", "t");
        assert_eq!(
            (arl.status, arl.rejections[0].code.as_str()),
            (ArlStatus::Negative, "LOT_MALFORMED")
        );
    }

    #[test]
    fn a_lot_delivered_twice_gets_the_same_answer() {
        let mut ins = Insurer::new("i");
        let der = sample_lot("L3", 2).to_der().unwrap();
        let a = ins.receive(&der);
        let b = ins.receive(&der);
        assert_eq!(a, b);
        assert_eq!(
            ins.report(),
            InsurerReport {
                received: 2,
                duplicates: 1,
                positive: 1,
                negative: 0
            }
        );
    }

    #[test]
    fn spool_answers_every_lot_file() {
        let dir = tempfile::tempdir().unwrap();
        let (out, inb) = (dir.path().join("out"), dir.path().join("in"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&inb).unwrap();
        std::fs::write(out.join("L4.lot"), sample_lot("L4", 1).to_der().unwrap()).unwrap();
        std::fs::write(out.join("bad.lot"), b"junk").unwrap();
        let mut ins = Insurer::new("i");
        assert_eq!(spool_pass(&mut ins, &out, &inb).unwrap(), 2);
        let good = Arl::from_der(&std::fs::read(inb.join("L4.arl")).unwrap()).unwrap();
        assert_eq!(good.status, ArlStatus::Positive);
        let bad = Arl::from_der(&std::fs::read(inb.join("bad.arl")).unwrap()).unwrap();
        assert_eq!(
            (bad.lot_id.as_str(), bad.status),
            ("bad", ArlStatus::Negative)
        );
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "answered lots leave the outbox"
        );
    }
}
