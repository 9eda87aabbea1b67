//! Self-diagnosis (`system.doctor`, `fsectl doctor`): checks what fsed depends on and says, in
//! plain words, what is wrong and how to fix it. Each check is independent: one failing does
//! not hide the others. Checks, in order: the reader service (pcscd) and the readers it sees,
//! which slot holds which card, card certificates and their expiry, PIN tries left, the clock,
//! the database's integrity and the free disk, the broker (or spool directories) and its
//! topology, the backlog and the oldest unsent sheet against its sending deadline, the lots sent
//! whose ARL has not come in time, and the returns refused (dead-lettered, per reason) or not
//! authenticable (no trust store), and the paper duplicates fsed could not write.

use chrono::{NaiveDate, Utc};
use fse_formats::cards::CardKind;
use fse_formats::pki::{CertCheck, CertStatus};
use serde::Serialize;

use crate::cards::{CardInfo, ServiceState, ServiceStatus};
use crate::config::CardBackend;
use crate::context::Context;
pub use crate::context::DoctorSetup as Setup;
use crate::transport::Transport;

/// Free disk below this under the state directory is a failure.
pub const DISK_FAILURE_BYTES: u64 = 100 * 1024 * 1024;
/// Free disk below this under the state directory is a warning.
pub const DISK_WARNING_BYTES: u64 = 1024 * 1024 * 1024;
/// A card certificate ending within this many days is a warning.
pub const CERT_WARNING_DAYS: i64 = 30;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but needs attention soon.
    Warning,
    /// Broken: sheets cannot be made or sent until it is fixed.
    Failure,
}

/// One check and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name of the check (`pcscd`, `readers`, `cards`, `certificates`, `pin`, `clock`,
    /// `database`, `stored_rows` (thorough only), `disk`, `broker`, `backlog`, `arl`,
    /// `paper_missing`, `returns`, `network`, `paper`, `remote_cards` (only with
    /// `[[remote.fsed]]`)).
    pub check: &'static str,
    /// Verdict.
    pub status: Status,
    /// What was found, in plain words.
    pub detail: String,
    /// How to fix it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Everything the doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The worst verdict of all checks.
    pub status: Status,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

fn check(check: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        check,
        status,
        detail: detail.into(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, how: impl Into<String>) -> Check {
        self.fix = Some(how.into());
        self
    }
}

/// Runs every check; `thorough` also reads the whole database (`PRAGMA integrity_check`
/// instead of `quick_check`, and every stored row's checksum, every lot's signature and
/// Merkle root: the `stored_rows` check).
pub async fn run(ctx: &Context, setup: &Setup, thorough: bool) -> Report {
    let mut checks = Vec::new();
    let service = ctx.cards.service();
    checks.extend(readers(setup, &service).await);
    checks.extend(cards(ctx, &service).await);
    // One read serves the clock (the last event's time) and the backlog.
    let queue = ctx
        .store
        .read(|q| q.backlog())
        .await
        .map_err(|e| e.to_string());
    checks.push(clock(&queue));
    checks.extend(database(ctx, setup, thorough).await);
    checks.push(broker(setup).await);
    checks.push(backlog(ctx, queue));
    checks.push(arl(ctx).await);
    checks.push(papers(ctx, setup).await);
    checks.push(returns(ctx, setup).await);
    checks.push(network(ctx));
    checks.push(paper(&ctx.paper));
    if ctx.remote.is_configured() {
        checks.push(remote_cards(&ctx.remote.status()));
    }
    let status = checks
        .iter()
        .map(|c| c.status)
        .max_by_key(|s| *s as u8)
        .unwrap_or(Status::Ok);
    Report { status, checks }
}

/// pcscd and its readers (PC/SC backend), or the embedded virtual reader: a fresh look (a new
/// context) and fsed's own link (its card thread's context), which can differ: after pcscd
/// restarts, a fresh context works while fsed's old one is dead until it re-establishes it.
async fn readers(setup: &Setup, service: &ServiceStatus) -> Vec<Check> {
    match setup.backend {
        CardBackend::Virtual => vec![check(
            "readers",
            Status::Ok,
            format!(
                "embedded virtual reader, slots {}",
                setup.virtual_slots.join(", ")
            ),
        )],
        CardBackend::Pcsc => {
            let listed = tokio::task::spawn_blocking(|| -> Result<Vec<String>, String> {
                let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(|e| e.to_string())?;
                match ctx.list_readers_owned() {
                    Ok(names) => Ok(names
                        .into_iter()
                        .map(|n| n.to_string_lossy().into_owned())
                        .collect()),
                    Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .unwrap_or_else(|e| Err(format!("check failed: {e}")));
            let own = match service.state {
                ServiceState::Connected | ServiceState::Embedded => None,
                ServiceState::Waiting => Some(format!(
                    "fsed has not reached pcscd since it started ({}; last error: {}): it tries again every second",
                    service.since,
                    service.error.as_deref().unwrap_or("none")
                )),
                ServiceState::Lost => Some(format!(
                    "fsed lost its link to pcscd at {} ({}) and is re-establishing it (every second); its cards are read again, PIN to be entered again, once it is back",
                    service.since,
                    service.error.as_deref().unwrap_or("no error recorded")
                )),
            };
            match (listed, own) {
                (Err(e), own) => vec![check(
                    "pcscd",
                    Status::Failure,
                    match own {
                        Some(own) => format!("pcscd is not reachable: {e}; {own}"),
                        None => format!("pcscd is not reachable: {e}"),
                    },
                )
                .fix("start the smart card service: `systemctl start pcscd.socket` (package pcscd); fsed finds the readers and cards by itself once it answers")],
                (Ok(_), Some(own)) => vec![check(
                    "pcscd",
                    Status::Failure,
                    format!("pcscd answers a new connection, but {own}"),
                )
                .fix("wait a few seconds and run `fsectl doctor` again; if this stays, see `journalctl -u fsed` and restart fsed: `systemctl restart fsed`")],
                (Ok(names), None) if names.is_empty() => vec![
                    check("pcscd", Status::Ok, "pcscd answers"),
                    check("readers", Status::Failure, "pcscd sees no card reader")
                        .fix("plug the reader in (USB) and check its driver: `pcsc_scan` lists the readers pcscd sees"),
                ],
                (Ok(names), None) => vec![
                    check("pcscd", Status::Ok, "pcscd answers"),
                    check(
                        "readers",
                        Status::Ok,
                        format!("{} reader(s): {}", names.len(), names.join(", ")),
                    ),
                ],
            }
        }
    }
}

/// Which slot holds which card, their certificates, the CPS PIN.
async fn cards(ctx: &Context, service: &ServiceStatus) -> Vec<Check> {
    if matches!(service.state, ServiceState::Waiting | ServiceState::Lost) {
        // Without its link to pcscd fsed sees no card: asking for one already in would mislead.
        return vec![check(
            "cards",
            Status::Failure,
            "fsed cannot see the cards until its link to pcscd is back (see the pcscd check)",
        )
        .fix("leave the cards in: fsed reads them again by itself once pcscd answers, then enter the PIN again")];
    }
    let listed = match ctx.cards.list().await {
        Ok(l) => l,
        Err(e) => {
            return vec![check(
                "cards",
                Status::Failure,
                format!("the card layer does not answer: {e}"),
            )
            .fix(
                "restart fsed: `systemctl restart fsed`; if it persists, see `journalctl -u fsed`",
            )]
        }
    };
    let mut out = vec![cards_held(&listed)];
    let now = Utc::now();
    for c in &listed {
        let Some(cert) = &c.certificate else { continue };
        out.push(certificate(c, cert, now));
    }
    for c in listed.iter().filter(|c| c.kind == CardKind::Cps) {
        out.push(pin(ctx, c).await);
    }
    out
}

/// What each reader holds, as one check: failed on an unreadable card, warned without a CPS.
fn cards_held(listed: &[CardInfo]) -> Check {
    let held: Vec<String> = listed
        .iter()
        .map(|c| {
            let what = match (&c.cps, &c.vitale) {
                (Some(cps), _) => format!(
                    "CPS {} of {} {}",
                    c.serial.as_deref().unwrap_or("?"),
                    cps.holder.given_name,
                    cps.holder.surname
                ),
                (None, Some(v)) => format!(
                    "Vitale card {} ({} beneficiaries)",
                    c.serial.as_deref().unwrap_or("?"),
                    v.beneficiaries.len()
                ),
                _ => format!("{:?} card", c.kind).to_lowercase(),
            };
            format!("{}: {what}", c.reader)
        })
        .collect();
    let has_cps = listed.iter().any(|c| c.kind == CardKind::Cps);
    let unreadable: Vec<String> = listed
        .iter()
        .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.reader)))
        .collect();
    if !unreadable.is_empty() {
        check(
            "cards",
            Status::Failure,
            format!("unreadable card: {}", unreadable.join("; ")),
        )
        .fix("take the card out, check it is the right way up and clean, and put it back")
    } else if !has_cps {
        check(
            "cards",
            Status::Warning,
            if held.is_empty() {
                "no card in any reader".to_string()
            } else {
                held.join("; ")
            },
        )
        .fix("insert the practitioner's CPS: sheets need it")
    } else {
        check("cards", Status::Ok, held.join("; "))
    }
}

/// The certificate check of a card: valid (and for how long), unchecked, expired, revoked or
/// refused.
fn certificate(c: &CardInfo, cert: &CertCheck, now: chrono::DateTime<Utc>) -> Check {
    let name = format!(
        "{} {}",
        if c.kind == CardKind::Cps {
            "CPS"
        } else {
            "Vitale card"
        },
        c.serial.as_deref().unwrap_or("?")
    );
    let until = cert.not_after.clone().unwrap_or_else(|| "?".into());
    let left = cert
        .not_after
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (t.with_timezone(&Utc) - now).num_days());
    let reason = cert.reason.clone().unwrap_or_default();
    match cert.status {
        CertStatus::Valid => match left {
            Some(d) if d < CERT_WARNING_DAYS => check(
                "certificates",
                Status::Warning,
                format!("{name}: certificate valid until {until}, {d} day(s) left"),
            )
            .fix("order the card's renewal now"),
            _ => check(
                "certificates",
                Status::Ok,
                format!("{name}: certificate valid until {until}"),
            ),
        },
        CertStatus::Unchecked => check(
            "certificates",
            Status::Warning,
            format!("{name}: certificate not checked (no trust directory configured)"),
        )
        .fix("set `trust_dir` in /etc/fsed/fsed.toml to the directory of the CA certificates and revocation lists"),
        CertStatus::Expired => check("certificates", Status::Failure, format!("{name}: certificate expired ({until})"))
            .fix("this card can no longer be used: use its renewed card"),
        CertStatus::Revoked => check("certificates", Status::Failure, format!("{name}: certificate revoked or card in opposition: {reason}"))
            .fix("this card can no longer be used: a CPS declared lost or stolen is replaced by the issuer; a Vitale card in opposition is refused"),
        _ => check("certificates", Status::Failure, format!("{name}: certificate refused: {reason}"))
            .fix("check the trust directory holds the issuing CAs, or use another card"),
    }
}

/// The PIN check of a CPS: verified, or how many tries are left before it blocks.
async fn pin(ctx: &Context, c: &CardInfo) -> Check {
    let serial = c.serial.clone();
    let name = format!("CPS {}", serial.as_deref().unwrap_or("?"));
    let tries = ctx
        .cards
        .run(move |reg| reg.cps(serial.as_deref())?.pin_tries_left())
        .await;
    match tries {
        Ok(Ok(None)) => check("pin", Status::Ok, format!("{name}: PIN verified")),
        Ok(Ok(Some(0))) => check("pin", Status::Failure, format!("{name}: PIN blocked"))
            .fix("unblock it with the card's PUK: `fsectl cards unblock-pin`"),
        Ok(Ok(Some(n))) if n < 3 => check(
            "pin",
            Status::Warning,
            format!(
                "{name}: PIN not verified, {n} tr{} left before it blocks",
                if n == 1 { "y" } else { "ies" }
            ),
        )
        .fix("enter the right PIN: `fsectl cards verify-pin`; a PIN blocked needs the PUK"),
        Ok(Ok(Some(n))) => check(
            "pin",
            Status::Warning,
            format!("{name}: PIN not verified ({n} tries left)"),
        )
        .fix("enter the PIN: `fsectl cards verify-pin` (or from the practice software)"),
        Ok(Err(e)) => check(
            "pin",
            Status::Failure,
            format!("{name}: PIN state unreadable: {e}"),
        )
        .fix("take the card out and put it back"),
        Err(e) => check(
            "pin",
            Status::Failure,
            format!("{name}: the card layer does not answer: {e}"),
        )
        .fix("restart fsed: `systemctl restart fsed`"),
    }
}

/// The clock: a plausible year, and not behind the last event fsed recorded.
fn clock(queue: &Result<fse_queue::Backlog, String>) -> Check {
    let now = Utc::now();
    let shown = now.format("%Y-%m-%d %H:%M:%S UTC");
    let fix = "set the clock right and keep it synchronised: `timedatectl set-ntp true`";
    if now.date_naive() < NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default() {
        return check(
            "clock",
            Status::Failure,
            format!("the clock says {shown}: far in the past"),
        )
        .fix(fix);
    }
    match queue {
        Ok(b) => match b
            .last_event_at
            .map(|t| t.time().fixed_offset())
        {
            Some(last) if last.with_timezone(&Utc) > now + chrono::Duration::minutes(5) => check(
                "clock",
                Status::Failure,
                format!("the clock says {shown}, before the last thing fsed recorded ({last}): it went back"),
            )
            .fix(fix),
            _ => check("clock", Status::Ok, format!("{shown}")),
        },
        Err(e) => check("clock", Status::Warning, format!("{shown}; could not compare with the database: {e}")),
    }
}

/// The database's integrity (`thorough`: the full integrity check and the stored rows; else
/// the quick check) and the free disk under the state directory.
async fn database(ctx: &Context, setup: &Setup, thorough: bool) -> Vec<Check> {
    let what = if thorough {
        "integrity check"
    } else {
        "quick check"
    };
    let found = ctx
        .store
        .read(move |q| {
            if thorough {
                q.integrity_check()
            } else {
                q.quick_check()
            }
        })
        .await;
    let integrity = match found {
        Ok(Ok(())) => check("database", Status::Ok, format!("{what} passed")),
        Ok(Err(found)) => check("database", Status::Failure, format!("{what} failed: {found}"))
            .fix("stop fsed, keep a copy of the state directory, and restore the database from the last backup; call support with the copy"),
        Err(e) => check("database", Status::Failure, format!("cannot read the database: {e}"))
            .fix("check the state directory's permissions and the disk (`journalctl -u fsed`)"),
    };
    let dir = setup.state_dir.clone();
    let free = tokio::task::spawn_blocking(move || {
        rustix::fs::statvfs(&dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let place = setup.state_dir.display();
    let mib = |b: u64| b / (1024 * 1024);
    let disk = match free {
        Ok(b) if b < DISK_FAILURE_BYTES => check(
            "disk",
            Status::Failure,
            format!("{} MiB free under {place}", mib(b)),
        )
        .fix("free disk space now: sheets cannot be stored when the disk is full"),
        Ok(b) if b < DISK_WARNING_BYTES => check(
            "disk",
            Status::Warning,
            format!("{} MiB free under {place}", mib(b)),
        )
        .fix("free some disk space"),
        Ok(b) => check(
            "disk",
            Status::Ok,
            format!("{} MiB free under {place}", mib(b)),
        ),
        Err(e) => check(
            "disk",
            Status::Warning,
            format!("cannot measure free space under {place}: {e}"),
        ),
    };
    let mut checks = vec![integrity];
    if thorough {
        checks.push(stored_rows(ctx).await);
    }
    checks.push(disk);
    checks
}

/// Every stored row's checksum, every lot's signature and Merkle root (`store.verify`).
async fn stored_rows(ctx: &Context) -> Check {
    match ctx.store.read(|q| q.verify()).await {
        Ok(r) if r.damaged.is_empty() => check(
            "stored_rows",
            Status::Ok,
            format!(
                "{} sheet(s), {} lot(s), {} DRE lot(s) verified",
                r.sheets, r.lots, r.dre_lots
            ),
        ),
        Ok(r) => {
            let named: Vec<String> = r
                .damaged
                .iter()
                .take(10)
                .map(|d| format!("{} {}: {}", d.kind, d.id, d.reason))
                .collect();
            let more = r.damaged.len().saturating_sub(named.len());
            let more = if more > 0 {
                format!("; and {more} more (`fsectl verify`)")
            } else {
                String::new()
            };
            check(
                "stored_rows",
                Status::Failure,
                format!("{} damaged: {}{more}", r.damaged.len(), named.join("; ")),
            )
            .fix("stop fsed, keep a copy of the state directory, and restore the database from the last backup; fsed does not serve or send a damaged row")
        }
        Err(e) => check(
            "stored_rows",
            Status::Failure,
            format!("cannot read the database: {e}"),
        )
        .fix("check the state directory's permissions and the disk (`journalctl -u fsed`)"),
    }
}

/// The broker and its topology (AMQP), or the spool directories.
async fn broker(setup: &Setup) -> Check {
    match setup.transport.check().await {
        Ok(detail) => check("broker", Status::Ok, detail),
        Err(e) => {
            let fix = match setup.transport.as_ref() {
                Transport::Spool(_) => "check that the spool directories exist and belong to the fsed user",
                Transport::Amqp(_) => "check the network and the broker (`transport.amqp_url`, or `amqp_urls` for a cluster, in /etc/fsed/fsed.toml); sheets stay queued until it answers",
            };
            check("broker", Status::Failure, e).fix(fix)
        }
    }
}

/// The backlog and the oldest unsent sheet against its deadline.
fn backlog(ctx: &Context, queue: Result<fse_queue::Backlog, String>) -> Check {
    let cutoff = crate::batcher::alarm_cutoff(ctx.live.get().deadline_alarm_days);
    let today = Utc::now().format("%Y%m%d").to_string();
    match queue {
        Err(e) => check(
            "backlog",
            Status::Failure,
            format!("cannot read the queue: {e}"),
        ),
        Ok(b) if b.unsent == 0 => check("backlog", Status::Ok, "nothing waits to be sent"),
        Ok(b) => {
            let oldest = b
                .oldest_created_at
                .map(|t| t.to_string())
                .unwrap_or_default();
            let deadline = b.nearest_deadline.unwrap_or_default();
            let detail = format!(
                "{} sheet(s) wait to be sent; the oldest was made {oldest}; the nearest sending deadline is {deadline}",
                b.unsent
            );
            if !deadline.is_empty() && deadline < today {
                check("backlog", Status::Failure, format!("{detail}: past"))
                    .fix("send now (`fsectl transmit`) and fix what holds the queue back (broker, CPS PIN); a sheet past its deadline may be refused")
            } else if !deadline.is_empty() && deadline <= cutoff {
                check("backlog", Status::Warning, format!("{detail}: near"))
                    .fix("send now: `fsectl transmit`; check the broker and that the CPS is in with its PIN verified")
            } else {
                check("backlog", Status::Ok, detail)
            }
        }
    }
}

/// The lots sent whose ARL has not come within `transport.arl_timeout_secs`: sent again by
/// fsed, or given up after `transport.arl_max_resends` resends (a person asks the insurer).
async fn arl(ctx: &Context) -> Check {
    let live = ctx.live.get();
    let sent_before = fse_queue::stamp_ago(live.arl_timeout);
    let max = live.arl_max_resends;
    let alarms = match ctx
        .store
        .read(move |q| q.arl_alarms(sent_before, max))
        .await
    {
        Ok(a) => a,
        Err(e) => {
            return check(
                "arl",
                Status::Failure,
                format!("cannot read the queue: {e}"),
            )
        }
    };
    if alarms.is_empty() {
        return check(
            "arl",
            Status::Ok,
            "every lot sent has its ARL or is within its ARL timeout",
        );
    }
    let shown: Vec<String> = alarms
        .iter()
        .map(|a| {
            format!(
                "{} to {} (sent again {} time(s), last sent {}{})",
                a.lot_id,
                a.destination,
                a.resends,
                a.sent_at,
                if a.given_up { ", resends used up" } else { "" }
            )
        })
        .collect();
    let detail = format!(
        "{} lot(s) sent without an ARL after {}s: {}",
        alarms.len(),
        live.arl_timeout.as_secs(),
        shown.join("; ")
    );
    if alarms.iter().any(|a| a.given_up) {
        check("arl", Status::Warning, detail).fix(format!(
            "fsed stopped resending after {max} time(s): ask the insurer whether it has these lots, \
             and check that the return queue exists and that nothing deletes or purges it; to send \
             them again, raise transport.arl_max_resends and reload fsed (`systemctl reload fsed`)"
        ))
    } else {
        check("arl", Status::Warning, detail).fix(
            "fsed sends these lots again by itself (the insurer answers a lot id again); check \
             that the return queue exists and that nothing deletes or purges it",
        )
    }
}

/// Degraded-mode sheets without their `degraded_paper` document `[attachments]
/// degraded_paper_days` calendar days after their creation: a warning naming them.
async fn papers(ctx: &Context, setup: &Setup) -> Check {
    let days = setup.attachments.degraded_paper_days;
    let cutoff = crate::batcher::paper_cutoff(days, Utc::now());
    let found = ctx
        .store
        .read(move |q| q.sheets_without_paper(&cutoff))
        .await;
    match found.map(|rows| crate::batcher::missing_papers(crate::batcher::degraded(rows), days)) {
        Err(e) => check("paper_missing", Status::Failure, format!("cannot read the queue: {e}")),
        Ok(Ok(fine)) => check("paper_missing", Status::Ok, fine),
        Ok(Err(late)) => check("paper_missing", Status::Warning, late).fix(
            "scan each sheet's signed paper form and attach it: fse.attach with kind degraded_paper",
        ),
    }
}

/// Returns refused and dead-lettered so far (per reason), and whether returns can be
/// authenticated at all: a warning when any was refused or no trust store is configured.
async fn returns(ctx: &Context, setup: &Setup) -> Check {
    let counts = match ctx.store.read(|q| q.dead_letter_counts()).await {
        Ok(c) => c,
        Err(e) => {
            return check(
                "returns",
                Status::Failure,
                format!("cannot read the queue: {e}"),
            )
        }
    };
    let total: u64 = counts.values().sum();
    let listed = counts
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if !setup.trust_configured {
        return check(
            "returns",
            Status::Warning,
            format!("no trust directory: every ARL and payment return is refused ({total} so far)"),
        )
        .fix("set `trust_dir` in /etc/fsed/fsed.toml to a directory whose CAs include the insurers' CA");
    }
    if total == 0 {
        return check("returns", Status::Ok, "no return refused");
    }
    check(
        "returns",
        Status::Warning,
        format!("{total} return(s) refused and dead-lettered: {listed}"),
    )
    .fix("look at the dead-letter queue (`<return queue>.dead`, header x-fsed-reason) or the spool inbox's `refused/` folder, and ask the insurer about them")
}

/// The network API: its listener's address (or off), the server certificate's end (a warning
/// within [`CERT_WARNING_DAYS`]), the workstations enrolled and revoked.
fn network(ctx: &Context) -> Check {
    let net = &ctx.network;
    let all = net.store.all();
    let revoked = all.iter().filter(|e| e.revoked_at.is_some()).count();
    let enrolled = all.len() - revoked;
    let Some(address) = net.bound() else {
        return check(
            "network",
            Status::Ok,
            format!("network API off (network.listen unset); {enrolled} workstation certificate(s) in force, {revoked} revoked"),
        );
    };
    let now = Utc::now().timestamp();
    let (status, ends) = match net.server_not_after() {
        Some(t) => {
            let days = (t - now) / 86_400;
            let status = if t <= now {
                Status::Failure
            } else if days < CERT_WARNING_DAYS {
                Status::Warning
            } else {
                Status::Ok
            };
            (
                status,
                format!(
                    "server certificate ends {} ({days} days)",
                    crate::net::rfc3339(t)
                ),
            )
        }
        None => (Status::Warning, "no server certificate yet".to_string()),
    };
    let c = check(
        "network",
        status,
        format!("network API listening on {address}; {ends}; {enrolled} workstation certificate(s) in force, {revoked} revoked"),
    );
    match status {
        Status::Ok => c,
        _ => c.fix("restart fsed: it makes a new server certificate when the current one ends within 30 days"),
    }
}

/// The paper duplicates fsed made by itself and could not write (each tried again at the
/// next look, `[paper] check_secs`).
pub fn paper(paper: &crate::paper::Paper) -> Check {
    let failures = paper.failures();
    let dir = paper.dir().display();
    let Some(first) = failures.first() else {
        return check(
            "paper",
            Status::Ok,
            format!("every paper duplicate fsed made was written (in {dir})"),
        );
    };
    let sheets: Vec<String> = failures.iter().map(|f| f.sheet_id.to_string()).collect();
    check(
        "paper",
        Status::Warning,
        format!(
            "{} paper duplicate(s) not written (sheets {}); the first at {}: {}",
            failures.len(),
            sheets.join(", "),
            first.at,
            first.error
        ),
    )
    .fix(format!(
        "make {dir} writable by fsed (or set [paper] dir); fsed tries again every [paper] check_secs, or ask now with `fsectl fse duplicate ID`"
    ))
}

/// The other fseds whose cards this one may use: each reachable or not, since when, why not,
/// and the cards seen there. One out of reach is a warning (sheets and lots wait for it or use
/// cards here).
pub fn remote_cards(links: &[crate::remote::LinkStatus]) -> Check {
    let words: Vec<String> = links
        .iter()
        .map(|l| match (l.reachable, &l.last_error) {
            (true, _) => format!(
                "{} ({}): reachable since {}, {} card(s)",
                l.name, l.address, l.since, l.cards
            ),
            (false, why) => format!(
                "{} ({}): out of reach since {}: {}",
                l.name,
                l.address,
                l.since,
                why.as_deref().unwrap_or("not connected yet")
            ),
        })
        .collect();
    let down = links.iter().filter(|l| !l.reachable).count();
    if down == 0 {
        return check("remote_cards", Status::Ok, words.join("; "));
    }
    check("remote_cards", Status::Warning, words.join("; ")).fix(
        "check that the other fsed runs and listens (`[network]` there), the address in `[[remote.fsed]]`, and this fsed's enrolled identity (`remote.identity_dir`)",
    )
}
