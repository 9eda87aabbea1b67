//! fsectl's command line: the commands, their options and their help text (the man pages of
//! `daemon/man` are made from it).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// fsectl — drive and inspect fsed.
#[derive(Parser)]
// Named after the package fsectl was first built in: `fsectl --version` says `fsed X.Y.Z`,
// the version of fsed it comes with.
#[command(name = "fsed", version)]
pub(crate) struct Cli {
    /// API socket of fsed.
    #[arg(long, env = "FSED_SOCKET", default_value = "/run/fsed/fsed.sock")]
    pub(crate) socket: PathBuf,
    /// Print the JSON results instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// A remote fsed's network API (`host:port`): the command goes there over mutual TLS
    /// with the identity of `--identity`, instead of to the local socket.
    #[arg(
        long = "host",
        id = "remote",
        env = "FSED_HOST",
        value_name = "HOST:PORT"
    )]
    pub(crate) remote: Option<String>,
    /// The enrolled identity used with `--host` (written by `fsectl enroll`).
    #[arg(
        long,
        env = "FSED_IDENTITY",
        default_value = "/var/lib/fsed/network/identity"
    )]
    pub(crate) identity: PathBuf,
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

/// The commands.
#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Version, cards present and queue counts; with a sheet id (or `--number`), where that
    /// sheet is from created to paid and whether sending it again is safe (`fse.status`).
    Status {
        /// The sheet's id.
        sheet: Option<i64>,
        /// The sheet's number instead of its id.
        #[arg(long, conflicts_with = "sheet")]
        number: Option<u64>,
    },
    /// fsed's version (`system.version`).
    Version,
    /// Checks what fsed depends on and says how to fix what is wrong (`system.doctor`). When
    /// fsed does not answer, compares its database with the database's high-water mark
    /// (read-only) and says what committed data is missing, if any, and how to restore it.
    Doctor {
        /// Also read the whole database: the full integrity check (not the quick one) and
        /// every stored row's checksum, lot signature and Merkle root (as `verify`).
        #[arg(long)]
        thorough: bool,
        /// fsed's database, looked at when fsed does not answer.
        #[arg(long, default_value = "/var/lib/fsed/fsed.db")]
        database: PathBuf,
    },
    /// Checks every stored sheet's checksum, every lot's signature and Merkle root against
    /// its sheets, every DRE lot (`store.verify`); names each damaged row by id (exit 7
    /// when any).
    Verify,
    /// Copies fsed's database while it runs to FILE (`queue.backup`: SQLite's online backup,
    /// checked by `PRAGMA integrity_check`, mode 0600, put in place atomically). fsed writes
    /// FILE itself: under the systemd unit, only under /var/lib/fsed. `fsed restore FILE`
    /// puts it back.
    Backup {
        /// The copy to make (a relative path is taken from the current directory).
        file: PathBuf,
    },
    /// Cards in the readers and their PINs.
    #[command(subcommand)]
    Cards(CardsCmd),
    /// The Vitale card.
    #[command(subcommand)]
    Vitale(VitaleCmd),
    /// Care sheets.
    #[command(subcommand)]
    Fse(FseCmd),
    /// Lots.
    #[command(subcommand)]
    Lots(LotsCmd),
    /// Sends what is queued now; with `--wait`, follows it with a progress bar until every
    /// sheet is sent (`transmit.now`).
    Transmit {
        /// Wait until nothing is left to send.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Acknowledgements (ARL) and payment returns (`returns.list`).
    Returns {
        /// Only those of this lot.
        #[arg(long)]
        lot: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Sheets in AMO tiers payant with a positive ARL: when the AMO paid, the working days
    /// it took and the late-payment penalty it owes (décret 2016-1069: 1 € on day 8 or 9,
    /// 10 % of its share from day 10), totals per insurer (`payments.list`).
    Payments {
        /// Only unpaid sheets past their 7 working days.
        #[arg(long)]
        overdue: bool,
        /// Also write the list to FILE for the accountant: CSV, `;` and decimal comma,
        /// UTF-8, written durably.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// Only sheets whose ARL is dated on or after this day (YYYYMMDD).
        #[arg(long)]
        from: Option<String>,
        /// Only sheets whose ARL is dated on or before this day (YYYYMMDD).
        #[arg(long)]
        to: Option<String>,
        /// Count unpaid sheets up to this day (YYYYMMDD; default today in France).
        #[arg(long = "as-of")]
        as_of: Option<String>,
    },
    /// The queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Prints events as they happen (`events.subscribe`) until interrupted.
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Only this event (repeat for several; `lagged` always comes).
        #[arg(long = "only", value_name = "EVENT")]
        only: Vec<String>,
    },
    /// The workstations enrolled with this fsed's network API (on the fsed host, local
    /// socket only).
    #[command(subcommand)]
    Workstations(WorkstationsCmd),
    /// Enrolls this workstation with a remote fsed: exchanges the one-time code shown by
    /// `fsectl workstations pair` on the fsed host for a certificate. The key is made here and
    /// never leaves; the CA answered is trusted only when the answer proves it knows the code.
    Enroll {
        /// The enrollment address `workstations pair` printed (`host:port`).
        #[arg(long, value_name = "HOST:PORT")]
        host: String,
        /// The one-time code (`K7QF-2MXD-9TPA-WR4E`).
        #[arg(long)]
        code: String,
        /// The name the code was made for.
        #[arg(long)]
        name: String,
        /// Where the identity is written (`ca.crt`, `client.crt`, `client.key`,
        /// `enrollment.json`).
        #[arg(long, default_value = "/var/lib/fsed/network/identity")]
        out: PathBuf,
    },
    /// Prints a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Calls any method with JSON parameters.
    Call {
        /// Method name.
        method: String,
        /// Parameters, as JSON.
        params: Option<String>,
    },
}

/// `fsectl cards …`.
#[derive(Subcommand)]
pub(crate) enum CardsCmd {
    /// The cards in the readers (`cards.list`).
    List,
    /// Presents the CPS PIN, read from standard input, never from the command line
    /// (`cards.verify_pin`).
    VerifyPin {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
    /// PIN state and tries left (`cards.pin_status`).
    PinStatus {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
    /// Changes the CPS PIN: the old PIN then the new one, one a line on standard input
    /// (`cards.change_pin`).
    ChangePin {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
    /// Unblocks the CPS PIN: the PUK then the new PIN, one a line on standard input
    /// (`cards.unblock_pin`).
    UnblockPin {
        /// Serial of the CPS when several are present.
        #[arg(long)]
        cps_serial: Option<String>,
    },
}

/// `fsectl vitale …`.
#[derive(Subcommand)]
pub(crate) enum VitaleCmd {
    /// The Vitale card's contents and its certificate check (`vitale.read`).
    Read,
}

/// `fsectl fse …`.
#[derive(Subcommand)]
pub(crate) enum FseCmd {
    /// Creates a care sheet for one act (`fse.create`).
    Create {
        /// Act code (e.g. G).
        #[arg(long, default_value = "G")]
        code: String,
        /// Coefficient in hundredths.
        #[arg(long, default_value_t = 100)]
        coefficient: u32,
        /// Date of care YYYY-MM-DD or YYYYMMDD (default today).
        #[arg(long)]
        date: Option<String>,
        /// Beneficiary index on the Vitale card.
        #[arg(long, default_value_t = 0)]
        beneficiary: usize,
        /// Situation index on the CPS.
        #[arg(long, default_value_t = 0)]
        situation: usize,
        /// Idempotency key.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Shows one sheet (`fse.get`).
    Get {
        /// Sheet id.
        id: i64,
    },
    /// Lists sheets (`fse.list`).
    List {
        /// Only sheets in this state.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Those after this id (paging).
        #[arg(long, default_value_t = 0)]
        after_id: i64,
    },
    /// Cancels a sheet not yet in a lot (`fse.cancel`).
    Cancel {
        /// Sheet id.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Sends a rejected sheet again (`fse.resubmit`).
    Resubmit {
        /// Sheet id.
        id: i64,
    },
    /// The proof a signed sheet carries alone (`fse.proof`).
    Proof {
        /// Sheet id.
        id: i64,
    },
    /// Writes the paper duplicate of a sheet as a PDF in fsed's `[paper] dir`
    /// (`fse.duplicate`); with `--out`, copies it there, checked against its SHA-256 (the
    /// file is on fsed's host: `--out` works on that host).
    Duplicate {
        /// Sheet id.
        id: i64,
        /// Why the duplicate is made, printed on it.
        #[arg(long)]
        reason: Option<String>,
        /// Where to copy the PDF (`-`: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `fsectl lots …`.
#[derive(Subcommand)]
pub(crate) enum LotsCmd {
    /// Lists lots (`lots.list`).
    List,
    /// Shows one lot (`lots.get`).
    Get {
        /// Lot id.
        id: String,
    },
    /// Closes open lots now (`lots.close`).
    Close,
}

/// `fsectl queue …`.
#[derive(Subcommand)]
pub(crate) enum QueueCmd {
    /// Counts of sheets and lots per state, and of lots sent again for a missing ARL
    /// (`queue.stats`).
    Stats,
    /// Sheets near or past their sending deadline, and lots sent whose ARL has not come
    /// (`queue.alarms`).
    Alarms,
}

/// `fsectl workstations …`.
#[derive(Subcommand)]
pub(crate) enum WorkstationsCmd {
    /// Makes a one-time code for a workstation and prints it with the enrollment address and
    /// the CA's fingerprint (`workstations.pair`).
    Pair {
        /// The workstation's name (a-z, 0-9, '-', '_', '.'): its rights are
        /// `[network.workstations.<name>]`.
        #[arg(long)]
        name: String,
        /// How long the code lasts, in seconds.
        #[arg(long)]
        valid_secs: Option<u64>,
    },
    /// The workstation certificates issued, revoked or in force, and who is connected
    /// (`workstations.list`).
    List,
    /// Revokes a workstation: its certificates are refused from now on and its connections
    /// close (`workstations.revoke`).
    Revoke {
        /// The workstation's name.
        name: String,
    },
}
