//! `fsectl events`: prints events as they happen (`events.subscribe`), one a line.

use std::io::Write;

use fsed_client::Client;
use serde_json::json;

use crate::error::CallError;
use crate::output::cell;

/// Subscribes to `only` (every event when empty) and prints events until `count` have come
/// (or forever).
pub(crate) fn events(
    c: &mut Client,
    j: bool,
    count: Option<usize>,
    only: Vec<String>,
) -> Result<(), CallError> {
    let params = if only.is_empty() {
        json!({})
    } else {
        json!({ "events": only })
    };
    c.call("events.subscribe", params)?;
    // On standard error, so `--json` output stays one event a line: a script (or a
    // test) may wait for this line before it makes what it watches for.
    eprintln!("fsectl: subscribed; events follow");
    let mut seen = 0;
    while count.is_none_or(|n| seen < n) {
        let params = c.next_event()?;
        seen += 1;
        if j {
            println!("{params}");
        } else {
            let mut rest = params.clone();
            if let Some(o) = rest.as_object_mut() {
                o.remove("at");
                o.remove("event");
            }
            println!(
                "{}  {:<18} {rest}",
                cell(&params["at"]),
                cell(&params["event"])
            );
        }
        let _ = std::io::stdout().flush();
    }
    Ok(())
}
