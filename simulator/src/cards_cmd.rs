//! `fse-sim cards`: shows the default CPS and Vitale card to a vpcd reader
//! (pcscd's driver by default, slots on 35963 and 35964) until stopped, and
//! takes `insert`, `remove`, `swap`, `stats` and `list` orders on its control
//! socket (`fse-sim cards insert --slot 0 --profile …` sends them).

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
    /// Unix socket of the CPS slot of fsed's embedded virtual reader (`--virtual-slot
    /// unix:PATH`), instead of `--host` and `--cps-port`.
    #[arg(long)]
    pub cps_socket: Option<std::path::PathBuf>,
    /// Unix socket of the Vitale slot, instead of `--host` and `--vitale-port`.
    #[arg(long)]
    pub vitale_socket: Option<std::path::PathBuf>,
    /// Time a card takes per APDU, in milliseconds (a real card: tens of ms).
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Time a card takes per signature, in milliseconds (a real card: about 150 ms).
    #[arg(long, default_value_t = 150)]
    pub signature_latency_ms: u64,
    /// Time a card takes to check a PIN or PUK, in milliseconds (default: `--latency-ms`).
    #[arg(long)]
    pub pin_latency_ms: Option<u64>,
    /// Profile of the card in the CPS slot: a built-in name or a TOML file (`none`: empty slot).
    #[arg(long, default_value = profiles::DEFAULT_CPS)]
    pub cps_profile: String,
    /// Profile of the card in the Vitale slot: a built-in name or a TOML file (`none`: empty slot).
    #[arg(long, default_value = profiles::DEFAULT_VITALE)]
    pub vitale_profile: String,
    /// Control socket of the running simulator.
    #[arg(long, global = true, env = "FSE_SIM_CONTROL", default_value = crate::control::DEFAULT_SOCKET)]
    pub control: std::path::PathBuf,
    /// An order to the running simulator; without one, run the simulator.
    #[command(subcommand)]
    pub order: Option<Order>,
}

/// Orders to a running `fse-sim cards`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Order {
    /// Put a card in a slot.
    Insert {
        /// Slot: 0 (or `cps`), 1 (or `vitale`).
        #[arg(long, value_parser = parse_slot)]
        slot: usize,
        /// Built-in profile name or TOML file.
        #[arg(long)]
        profile: String,
    },
    /// Take the card out of a slot.
    Remove {
        /// Slot: 0 (or `cps`), 1 (or `vitale`).
        #[arg(long, value_parser = parse_slot)]
        slot: usize,
    },
    /// Replace the card of a slot, leaving the slot empty a moment as a hand would.
    Swap {
        /// Slot: 0 (or `cps`), 1 (or `vitale`).
        #[arg(long, value_parser = parse_slot)]
        slot: usize,
        /// Built-in profile name or TOML file.
        #[arg(long)]
        profile: String,
        /// How long the slot stays empty, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        gap_ms: u64,
    },
    /// Print the counters of the card in a slot (APDUs, PIN presentations, signatures, authentications).
    Stats {
        /// Slot: 0 (or `cps`), 1 (or `vitale`).
        #[arg(long, value_parser = parse_slot)]
        slot: usize,
    },
    /// Print what each slot holds.
    List,
}

fn parse_slot(s: &str) -> Result<usize, String> {
    match s {
        "cps" => Ok(0),
        "vitale" => Ok(1),
        n => n
            .parse()
            .map_err(|_| format!("slot {n}: a number, `cps` or `vitale`")),
    }
}

/// Sends an order to the running simulator; prints its answer (errors on stderr, with a failure).
pub fn send(control: &std::path::Path, order: &Order) -> Result<(), String> {
    use crate::control::{request, Request};
    let ask = |req: Request| -> Result<(), String> {
        let answer = request(control, &req)?;
        match answer.get("error") {
            Some(e) => Err(e.to_string()),
            None => {
                println!("{}", answer["ok"]);
                Ok(())
            }
        }
    };
    match order.clone() {
        Order::Insert { slot, profile } => ask(Request::Insert { slot, profile }),
        Order::Remove { slot } => ask(Request::Remove { slot }),
        Order::Swap {
            slot,
            profile,
            gap_ms,
        } => {
            ask(Request::Remove { slot })?;
            std::thread::sleep(Duration::from_millis(gap_ms));
            ask(Request::Insert { slot, profile })
        }
        Order::Stats { slot } => ask(Request::Stats { slot }),
        Order::List => ask(Request::List),
    }
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

/// A slot's reader: its Unix socket when given, else `host:port`.
fn reader(host: &str, port: u16, socket: Option<&std::path::Path>) -> String {
    match socket {
        Some(path) => format!("{}{}", fse_formats::vpcd::UNIX_PREFIX, path.display()),
        None => format!("{host}:{port}"),
    }
}

/// Runs `fse-sim cards` until SIGINT or SIGTERM.
pub async fn run(args: CardsArgs) -> Result<(), profiles::ProfileError> {
    let latency = vpcd::Latency {
        apdu: Duration::from_millis(args.latency_ms),
        signature: Duration::from_millis(args.signature_latency_ms),
        pin: Duration::from_millis(args.pin_latency_ms.unwrap_or(args.latency_ms)),
    };
    // Check the profiles before anything connects.
    for profile in [&args.cps_profile, &args.vitale_profile] {
        if profile != "none" {
            profiles::Profile::load(profile)?.card()?;
        }
    }
    let slots = crate::control::Slots::new(
        vec![
            reader(&args.host, args.cps_port, args.cps_socket.as_deref()),
            reader(&args.host, args.vitale_port, args.vitale_socket.as_deref()),
        ],
        latency,
    );
    for (slot, profile) in [&args.cps_profile, &args.vitale_profile]
        .into_iter()
        .enumerate()
    {
        if profile != "none" {
            let r = slots
                .handle(crate::control::Request::Insert {
                    slot,
                    profile: profile.clone(),
                })
                .await;
            if let Some(e) = r.get("error") {
                tracing::warn!(slot, error = %e, "card not inserted");
            }
        }
    }
    let control = tokio::spawn(crate::control::serve(
        args.control.clone(),
        Arc::clone(&slots),
    ));
    println!("cards ready");
    tokio::select! {
        _ = crate::wait_for_signal() => {}
        r = control => {
            if let Ok(Err(e)) = r {
                tracing::warn!(socket = %args.control.display(), error = %e, "control socket failed");
            }
            crate::wait_for_signal().await;
        }
    }
    slots.remove_all().await;
    let _ = std::fs::remove_file(&args.control);
    Ok(())
}
