//! Repeated warnings and errors, bounded: a flood (a full disk failing every commit, a
//! hundred thousand unreadable returns) must not write a line per occurrence.
//!
//! A tracing layer ([`RateLimit`]) counts the WARN and ERROR events of each call site (the
//! `tracing::warn!` or `tracing::error!` that made them) in windows of [`WINDOW`]: the first
//! [`PER_WINDOW`] of a window are written, the others are dropped and counted. Once the
//! window is over, [`run_summaries`] writes one WARN line for that call site, "… N more like
//! this suppressed in the last 60 s", with the call site (`file:line`) and the message of the
//! first one dropped; at stop, [`emit_summaries`] writes those of the windows still running.
//! INFO and below are never limited (they are off in a flood's worst case anyway, and a
//! busy practice's INFO lines are its record), nor are the summaries themselves.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;

use crate::shutdown::Shutdown;

/// WARN and ERROR lines written per call site and window.
pub const PER_WINDOW: u32 = 10;
/// The window over which [`PER_WINDOW`] lines of a call site are written.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The target of the summary lines (never limited).
pub const SUMMARY_TARGET: &str = "fsed::log_limit";
/// Longest message of a suppressed event kept for its summary, in characters.
const SAMPLE_CHARS: usize = 200;

/// The counts of one call site in its current window.
struct Window {
    start: Instant,
    shown: u32,
    suppressed: u64,
    site: &'static Metadata<'static>,
    /// The message of the first event suppressed in this window.
    sample: String,
}

/// One call site's events suppressed over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `file:line` of the call site (its target when unknown).
    pub site: String,
    /// The level of its events.
    pub level: Level,
    /// The message of the first event suppressed.
    pub sample: String,
    /// How many were suppressed.
    pub suppressed: u64,
    /// Over how long (the window, or less at stop).
    pub over: Duration,
}

/// The windows of the call sites, and the summaries of windows over not written yet.
#[derive(Default)]
struct Sites {
    windows: HashMap<Identifier, Window>,
    pending: Vec<Summary>,
}

impl Window {
    /// This window's summary as of `now`; the window starts again at `now`.
    fn roll(&mut self, now: Instant, window: Duration) -> Summary {
        let s = Summary {
            site: match (self.site.file(), self.site.line()) {
                (Some(f), Some(l)) => format!("{f}:{l}"),
                _ => self.site.target().to_string(),
            },
            level: *self.site.level(),
            sample: std::mem::take(&mut self.sample),
            suppressed: self.suppressed,
            over: now.saturating_duration_since(self.start).min(window),
        };
        self.start = now;
        self.shown = 0;
        self.suppressed = 0;
        s
    }
}

/// The windows of every call site whose events were limited.
pub struct Limiter {
    per_window: u32,
    window: Duration,
    sites: Mutex<Sites>,
    /// Woken when a window first suppresses an event: a summary is then due at its end.
    due: tokio::sync::Notify,
}

impl Limiter {
    /// A limiter writing `per_window` events per call site and `window`.
    pub fn new(per_window: u32, window: Duration) -> Limiter {
        Limiter {
            per_window,
            window,
            sites: Mutex::new(Sites::default()),
            due: tokio::sync::Notify::new(),
        }
    }

    /// Whether an event of `event`'s call site may be written at `now`; counted when not.
    pub fn admit(&self, event: &Event<'_>, now: Instant) -> bool {
        let site = event.metadata();
        let mut guard = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        let sites = &mut *guard;
        let w = sites
            .windows
            .entry(site.callsite())
            .or_insert_with(|| Window {
                start: now,
                shown: 0,
                suppressed: 0,
                site,
                sample: String::new(),
            });
        if now.saturating_duration_since(w.start) >= self.window {
            // The window is over: its summary (if any) waits for the next writing.
            let summary = w.roll(now, self.window);
            if summary.suppressed > 0 {
                sites.pending.push(summary);
            }
        }
        if w.shown < self.per_window {
            w.shown += 1;
            return true;
        }
        if w.suppressed == 0 {
            w.sample = message_of(event);
            self.due.notify_one();
        }
        w.suppressed += 1;
        false
    }

    /// The summaries of the windows over at `now` that suppressed events (all of them when
    /// `all`, at stop); those windows start again.
    pub fn take_summaries(&self, now: Instant, all: bool) -> Vec<Summary> {
        let mut guard = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        let sites = &mut *guard;
        let mut out = std::mem::take(&mut sites.pending);
        for w in sites.windows.values_mut() {
            let over = now.saturating_duration_since(w.start);
            if w.suppressed == 0 || (!all && over < self.window) {
                continue;
            }
            out.push(w.roll(now, self.window));
        }
        // Windows over with nothing to say are forgotten: the map holds the busy call sites.
        sites
            .windows
            .retain(|_, w| now.saturating_duration_since(w.start) < self.window);
        out.sort_by(|a, b| a.site.cmp(&b.site));
        out
    }

    /// When the next summary is due: the earliest end of a window that suppressed events.
    pub fn next_due(&self) -> Option<Instant> {
        let sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        if !sites.pending.is_empty() {
            return Some(Instant::now());
        }
        sites
            .windows
            .values()
            .filter(|w| w.suppressed > 0)
            .map(|w| w.start + self.window)
            .min()
    }
}

/// The `message` field of an event, cut to [`SAMPLE_CHARS`].
fn message_of(event: &Event<'_>) -> String {
    struct Message(String);
    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "message" {
                self.0 = value.to_string();
            }
        }
    }
    let mut m = Message(String::new());
    event.record(&mut m);
    match m.0.char_indices().nth(SAMPLE_CHARS) {
        Some((at, _)) => format!("{}…", &m.0[..at]),
        None => m.0,
    }
}

/// The limiter of the process's logger ([`PER_WINDOW`] lines per call site and [`WINDOW`]).
pub fn global() -> Arc<Limiter> {
    static GLOBAL: LazyLock<Arc<Limiter>> =
        LazyLock::new(|| Arc::new(Limiter::new(PER_WINDOW, WINDOW)));
    Arc::clone(&GLOBAL)
}

/// The tracing layer that limits WARN and ERROR events per call site (see the module).
pub struct RateLimit(pub Arc<Limiter>);

impl<S: Subscriber> tracing_subscriber::Layer<S> for RateLimit {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        // Levels compare by verbosity: INFO, DEBUG and TRACE are greater than WARN.
        if *meta.level() > Level::WARN || meta.target() == SUMMARY_TARGET {
            return true;
        }
        self.0.admit(event, Instant::now())
    }
}

/// Writes the summaries due at `now` (all of them when `all`): one WARN line per call site.
pub fn emit_summaries(limiter: &Limiter, all: bool) {
    for s in limiter.take_summaries(Instant::now(), all) {
        tracing::warn!(
            target: SUMMARY_TARGET,
            site = %s.site,
            level = %s.level,
            like = %s.sample,
            suppressed = s.suppressed,
            "… {} more like this suppressed in the last {} s",
            s.suppressed,
            s.over.as_secs().max(1)
        );
    }
}

/// Writes each summary when its window ends, until shutdown; then those still pending.
pub async fn run_summaries(limiter: Arc<Limiter>, mut shutdown: Shutdown) {
    loop {
        let due = limiter.next_due();
        let wait = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => limiter.due.notified().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait() => {
                emit_summaries(&limiter, true);
                return;
            }
            () = wait => emit_summaries(&limiter, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Lines written by a subscriber, kept for the test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn subscriber(limiter: Arc<Limiter>, lines: &Lines) -> impl Subscriber {
        let out = lines.clone();
        tracing_subscriber::registry()
            .with(RateLimit(limiter))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .without_time()
                    .with_writer(move || out.clone()),
            )
    }

    #[test]
    fn a_hundred_thousand_refused_returns_write_ten_lines_and_their_count() {
        // A window of an hour: the whole flood falls in the first one.
        let limiter = Arc::new(Limiter::new(PER_WINDOW, Duration::from_secs(3600)));
        let lines = Lines::default();
        tracing::subscriber::with_default(subscriber(Arc::clone(&limiter), &lines), || {
            for i in 0..100_000 {
                crate::returns::log_dead_letter(
                    "spool",
                    crate::returns::Reason::Unreadable,
                    None,
                    &format!("unreadable ARL: number {i}"),
                );
                // Other levels and other call sites are not held back by that flood.
                if i % 10_000 == 0 {
                    tracing::info!("progress {i}");
                    tracing::warn!("another warning {i}");
                }
            }
            emit_summaries(&limiter, true);
        });
        let text = lines.text();
        let refused: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("fsed::returns: return refused"))
            .collect();
        // The first 10 written; 100,000 - 10 = 99,990 counted.
        assert_eq!(refused.len(), 10, "{text}");
        assert!(refused[0].contains("number 0"), "{}", refused[0]);
        assert!(refused[9].contains("number 9"), "{}", refused[9]);
        let summaries: Vec<&str> = text.lines().filter(|l| l.contains("suppressed")).collect();
        assert_eq!(summaries.len(), 1, "{text}");
        assert!(
            summaries[0].contains("99990 more like this suppressed"),
            "{}",
            summaries[0]
        );
        assert!(summaries[0].contains("returns.rs"), "{}", summaries[0]);
        // The message of those suppressed.
        assert!(
            summaries[0].contains("like=return refused"),
            "{}",
            summaries[0]
        );
        // 100,000 / 10,000 = 10 INFO lines and 10 of the other warning, all written.
        assert_eq!(text.lines().filter(|l| l.contains("progress")).count(), 10);
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("another warning"))
                .count(),
            10
        );
        // 10 + 1 + 10 + 10 lines in all, not 100,000.
        assert_eq!(text.lines().count(), 31, "{text}");
    }

    #[test]
    fn a_window_over_is_summarised_then_starts_again() {
        let limiter = Arc::new(Limiter::new(2, Duration::from_secs(60)));
        let lines = Lines::default();
        tracing::subscriber::with_default(subscriber(Arc::clone(&limiter), &lines), || {
            for i in 0..5 {
                tracing::error!(n = i, "commit failed");
            }
            // Nothing is due before the window's end.
            assert!(limiter.take_summaries(Instant::now(), false).is_empty());
            let due = limiter.next_due().expect("a summary is due");
            let later = due + Duration::from_millis(1);
            let s = limiter.take_summaries(later, false);
            // 5 - 2 written = 3 counted, over the whole window.
            assert_eq!(s.len(), 1, "{s:?}");
            assert_eq!(s[0].suppressed, 3);
            assert_eq!(s[0].level, Level::ERROR);
            assert_eq!(s[0].sample, "commit failed");
            assert_eq!(s[0].over, Duration::from_secs(60));
            assert!(limiter.next_due().is_none());
        });
        assert_eq!(lines.text().lines().count(), 2, "{}", lines.text());
    }
}
