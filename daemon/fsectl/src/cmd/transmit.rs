//! `fsectl transmit`: sends what is queued, and with `--wait` follows it with a progress bar
//! until every sheet is sent.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use fsed_client::Client;
use serde_json::{json, Value};

use crate::error::CallError;
use crate::output::pretty;

/// Sheets not sent yet, from `queue.stats`.
fn unsent(stats: &Value) -> u64 {
    ["accepted", "in_lot", "signed"]
        .iter()
        .map(|s| stats["sheets"][s].as_u64().unwrap_or(0))
        .sum()
}

pub(crate) fn transmit(
    c: &mut Client,
    json_out: bool,
    wait: bool,
    timeout: u64,
) -> Result<(), CallError> {
    // Everything queued goes: open lots close, then lots are sent.
    c.call("lots.close", json!({}))?;
    let r = c.call("transmit.now", json!({}))?;
    if !wait {
        if json_out {
            pretty(&r);
        } else {
            println!("sending asked");
        }
        return Ok(());
    }
    let start = unsent(&c.call("queue.stats", json!({}))?);
    let bar = if json_out || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(start)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} sending [{bar:40}] {pos}/{len} sheets ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut total = start;
    let (mut last, mut moved) = (start, Instant::now());
    let left = loop {
        let left = unsent(&c.call("queue.stats", json!({}))?);
        // Sheets made meanwhile join the backlog being sent.
        if left > total {
            total = left;
            bar.set_length(total);
        }
        bar.set_position(total - left);
        if left == 0 || Instant::now() >= deadline {
            break left;
        }
        if left != last {
            (last, moved) = (left, Instant::now());
        } else if moved.elapsed() > Duration::from_secs(2) {
            // Stalled: sheets made since the start sit in an open lot; close it and nudge.
            c.call("lots.close", json!({}))?;
            c.call("transmit.now", json!({}))?;
            moved = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    bar.finish_and_clear();
    if json_out {
        pretty(&json!({"sent": total - left, "unsent": left}));
    } else {
        println!("{} sheet(s) sent, {left} left", total - left);
    }
    if left > 0 {
        return Err(CallError::Exit(
            format!("{left} sheet(s) still unsent after {timeout} s: see `fsectl doctor`"),
            6,
        ));
    }
    Ok(())
}
