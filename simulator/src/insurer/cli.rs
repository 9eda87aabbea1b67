//! `fse-sim insurer`: its command-line options and its run loop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::pki::TrustStore;
use tokio::sync::watch;

use super::amqp::run_amqp_with;
use super::{
    run_spool, write_report, AmqpInsurerConfig, Insurer, InsurerError, InsurerKind, Knobs,
    DEFAULT_INSURER,
};

/// `fse-sim insurer` options.
#[derive(Debug, Clone, clap::Args)]
pub struct InsurerArgs {
    /// Broker URL (AMQP mode), e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`; several nodes of
    /// one cluster comma-separated, tried in turn when the one in use goes.
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
    /// Answer each rights request (ADRi) this many milliseconds after taking it.
    #[arg(long, default_value_t = 0)]
    pub rights_latency_ms: u64,
    /// Take rights requests and answer none: the rights service is out.
    #[arg(long)]
    pub rights_outage: bool,
    /// Answer rights requests with an `answeredAt` seven days old.
    #[arg(long)]
    pub rights_stale: bool,
    /// Answer "unknown" to rights requests for this NIR (13 characters or 15 with the key);
    /// may be given several times.
    #[arg(long, value_name = "NIR")]
    pub rights_unknown: Vec<String>,
    /// Sign rights answers with another insurer's key and certificate (019999999).
    #[arg(long)]
    pub rights_wrong_signer: bool,
    /// Sign rights answers, then flip a bit of the signature: a forged answer.
    #[arg(long)]
    pub rights_bad_signature: bool,
    /// Date each payment return N working days after the ARL it follows (French calendar,
    /// the ARL's day in France not counted): an AMO paying late, for fsed's late-payment
    /// penalties. The return still goes right after its ARL; only its signed date moves.
    #[arg(long, value_name = "N", requires = "payments")]
    pub pay_after_working_days: Option<u32>,
    /// Take lots from this many partition queues (AMQP, AMO): a consistent-hash exchange on
    /// the lot id feeds N quorum queues with a single active consumer each, so that several
    /// competing instances judge each lot once (0: one queue, as before).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub partitions: u32,
    /// With `--partitions`: this is instance K of M (`K/M`), taking partitions with
    /// `p mod M = K - 1` first and standing by on the others.
    #[arg(long, value_name = "K/M", requires = "partitions")]
    pub instance: Option<String>,
}

impl InsurerArgs {
    /// The knobs of the rights responder.
    pub fn rights_knobs(&self) -> super::RightsKnobs {
        super::RightsKnobs {
            latency: Duration::from_millis(self.rights_latency_ms),
            outage: self.rights_outage,
            stale: self.rights_stale,
            unknown: self.rights_unknown.clone(),
            wrong_signer: self.rights_wrong_signer,
            bad_signature: self.rights_bad_signature,
        }
    }

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
/// and its [`InsurerReport`](super::InsurerReport) as one JSON line when it stops without error.
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
        pay_after_working_days: args.pay_after_working_days,
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
    let knobs = args.rights_knobs();
    let (rights_tx, rights_rx) = tokio::sync::oneshot::channel::<()>();
    let partitions = args.partition_plan()?;
    let mut task = match (args.amqp, args.spool_outbox, args.spool_inbox) {
        (Some(url), _, _) => {
            // The AMO also answers rights requests (on the first broker); "ready" waits for
            // both consumers.
            if args.kind == InsurerKind::Amo {
                tokio::spawn(super::run_rights_amqp(
                    url.split(',').next().unwrap_or_default().trim().to_string(),
                    knobs,
                    stop.clone(),
                    Some(rights_tx),
                ));
            } else {
                let _ = rights_tx.send(());
            }
            let cfg = AmqpInsurerConfig {
                url,
                binding: args.binding,
                insurer: name,
                copies: if args.duplicate_replies { 2 } else { 1 },
                kind: args.kind,
            };
            let (shared, ready) = (Arc::clone(&insurer), Some(ready_tx));
            tokio::spawn(run_amqp_with(cfg, partitions, shared, stop, ready))
        }
        (None, Some(outbox), Some(inbox)) => {
            std::fs::create_dir_all(&outbox)?;
            std::fs::create_dir_all(&inbox)?;
            let _ = ready_tx.send(());
            let _ = rights_tx.send(());
            tokio::spawn(super::rights::run_rights_spool(
                outbox.clone(),
                knobs,
                stop.clone(),
            ));
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
    let mut ready = Box::pin(async move {
        ready_rx.await?;
        rights_rx.await
    });
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
