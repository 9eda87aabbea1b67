//! `fse-sim cards`: shows the default CPS and Vitale card to a vpcd reader
//! (pcscd's driver by default, slots on 35963 and 35964) until stopped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::card::VirtualCard;
use crate::profiles;
use crate::vpcd::{self, SharedCard};

/// `fse-sim cards` options.
#[derive(Debug, Clone, clap::Args)]
pub struct CardsArgs {
    /// Host of the vpcd reader.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the CPS slot.
    #[arg(long, default_value_t = fse_formats::vpcd::VPCD_PORT)]
    pub cps_port: u16,
    /// Port of the Vitale slot.
    #[arg(long, default_value_t = fse_formats::vpcd::VPCD_PORT + 1)]
    pub vitale_port: u16,
    /// Time a card takes per APDU, in milliseconds (a real card: tens of ms).
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Time a card takes per signature, in milliseconds (a real card: about 150 ms).
    #[arg(long, default_value_t = 150)]
    pub signature_latency_ms: u64,
    /// Profile of the card in the CPS slot: a built-in name or a TOML file (`none`: empty slot).
    #[arg(long, default_value = profiles::DEFAULT_CPS)]
    pub cps_profile: String,
    /// Profile of the card in the Vitale slot: a built-in name or a TOML file (`none`: empty slot).
    #[arg(long, default_value = profiles::DEFAULT_VITALE)]
    pub vitale_profile: String,
}

/// The default cards, running on their links.
pub struct RunningCards {
    /// The CPS.
    pub cps: SharedCard,
    /// Its counters.
    pub cps_stats: Arc<crate::card::CardStats>,
    /// The Vitale card.
    pub vitale: SharedCard,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningCards {
    /// Stops both links.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the default cards on the readers at `cps_addr` and `vitale_addr`.
pub fn start(cps_addr: String, vitale_addr: String, latency: vpcd::Latency) -> RunningCards {
    let cps_card = profiles::default_cps();
    let cps_stats = cps_card.stats();
    let cps: SharedCard = Arc::new(Mutex::new(Box::new(cps_card) as Box<dyn VirtualCard>));
    let vitale: SharedCard = Arc::new(Mutex::new(
        Box::new(profiles::default_vitale()) as Box<dyn VirtualCard>
    ));
    let (stop, rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(vpcd::serve(cps_addr, Arc::clone(&cps), latency, rx.clone())),
        tokio::spawn(vpcd::serve(vitale_addr, Arc::clone(&vitale), latency, rx)),
    ];
    RunningCards {
        cps,
        cps_stats,
        vitale,
        stop,
        tasks,
    }
}

/// Runs `fse-sim cards` until SIGINT or SIGTERM.
pub async fn run(args: CardsArgs) -> Result<(), profiles::ProfileError> {
    let latency = vpcd::Latency {
        apdu: Duration::from_millis(args.latency_ms),
        signature: Duration::from_millis(args.signature_latency_ms),
    };
    let (stop, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (profile, port) in [
        (&args.cps_profile, args.cps_port),
        (&args.vitale_profile, args.vitale_port),
    ] {
        if profile == "none" {
            continue;
        }
        let (card, _) = profiles::Profile::load(profile)?.card()?;
        let card: SharedCard = Arc::new(Mutex::new(card));
        tasks.push(tokio::spawn(vpcd::serve(
            format!("{}:{port}", args.host),
            card,
            latency,
            rx.clone(),
        )));
    }
    println!("cards ready");
    crate::wait_for_signal().await;
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
