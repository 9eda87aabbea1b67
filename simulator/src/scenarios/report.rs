//! The run's reports: JUnit XML (one testcase per scenario), JSON, and a self-contained HTML
//! page (no external asset: inline style, no script).

use std::fmt::Write as _;

use super::exec::{Outcome, Status};

/// A run: its scenarios' verdicts and its counts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// Its length, in milliseconds.
    pub ms: u64,
    /// Scenarios run.
    pub total: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Each scenario.
    pub scenarios: Vec<Outcome>,
}

impl Run {
    /// Counts `scenarios`.
    pub fn new(started_at: String, ms: u64, scenarios: Vec<Outcome>) -> Run {
        let count = |st: Status| scenarios.iter().filter(|o| o.status == st).count();
        Run {
            started_at,
            ms,
            total: scenarios.len(),
            passed: count(Status::Passed),
            failed: count(Status::Failed),
            skipped: count(Status::Skipped),
            scenarios,
        }
    }
}

/// `s` escaped for XML and HTML text and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 allows no other control character.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The JUnit XML: a testsuite `fsed-scenarios`, a testcase per scenario (classname: its first
/// tag), a `failure` whose message is the first mismatch, `skipped` with its reason.
pub fn junit(run: &Run) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"fsed-scenarios\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{}\">",
        run.total,
        run.failed,
        run.skipped,
        secs(run.ms)
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"fsed-scenarios\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
        run.total,
        run.failed,
        run.skipped,
        secs(run.ms),
        esc(&run.started_at)
    );
    for o in &run.scenarios {
        let class = o.tags.first().map_or("scenario", String::as_str);
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"scenarios.{}\" file=\"{}\" time=\"{}\"",
            esc(&o.id),
            esc(class),
            esc(&o.file),
            secs(o.ms)
        );
        let msg = o.message.clone().unwrap_or_default();
        match o.status {
            Status::Passed => x.push_str("/>\n"),
            Status::Failed => {
                let steps: String = o
                    .steps
                    .iter()
                    .map(|s| format!("{:?} {} {}\n", s.status, s.label, s.detail))
                    .collect();
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"{}\" type=\"mismatch\">{}</failure>\n    </testcase>",
                    esc(&msg),
                    esc(&steps)
                );
            }
            Status::Skipped => {
                let _ = writeln!(
                    x,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    esc(&msg)
                );
            }
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}\
.passed{color:#176c2e}.failed{color:#b00020;font-weight:bold}.skipped{color:#8a6d00}\
details{margin:.3em 0}summary{cursor:pointer}code{font-size:12px;word-break:break-all}";

/// The HTML page: the counts, then each scenario (failed ones open) with its steps.
pub fn html(run: &Run) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fsed scenarios</title><style>{STYLE}</style></head><body>\n\
         <h1>fsed scenario catalogue</h1>\n<p>Run at {} in {} s: <b>{}</b> scenarios, <span class=\"passed\">{} passed</span>, \
         <span class=\"failed\">{} failed</span>, <span class=\"skipped\">{} skipped</span>.</p>\n",
        esc(&run.started_at),
        secs(run.ms),
        run.total,
        run.passed,
        run.failed,
        run.skipped
    );
    h.push_str(
        "<table><tr><th>scenario</th><th>title</th><th>tags</th><th>verdict</th><th>ms</th></tr>\n",
    );
    for o in &run.scenarios {
        let st = status_name(o.status);
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{id}\">{id}</a></td><td>{}</td><td>{}</td><td class=\"{st}\">{st}</td><td>{}</td></tr>",
            esc(&o.title),
            esc(&o.tags.join(", ")),
            o.ms,
            id = esc(&o.id)
        );
    }
    h.push_str("</table>\n");
    for o in &run.scenarios {
        scenario_html(&mut h, o);
    }
    h.push_str("</body></html>\n");
    h
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    }
}

fn scenario_html(h: &mut String, o: &Outcome) {
    let st = status_name(o.status);
    let open = if o.status == Status::Failed {
        " open"
    } else {
        ""
    };
    let _ = write!(
        h,
        "<details id=\"{}\"{open}><summary><span class=\"{st}\">{st}</span> {} — {}</summary>\n<p><code>{}</code></p>\n",
        esc(&o.id),
        esc(&o.id),
        esc(&o.title),
        esc(&o.file)
    );
    if let Some(m) = &o.message {
        let _ = writeln!(h, "<p class=\"{st}\">{}</p>", esc(m));
    }
    h.push_str("<table><tr><th>step</th><th>verdict</th><th>expected</th><th>got</th><th>detail</th></tr>\n");
    for s in &o.steps {
        let sst = status_name(s.status);
        let (exp, got) = s
            .mismatch
            .as_ref()
            .map_or((String::new(), String::new()), |m| {
                (format!("{}: {}", m.field, m.expected), m.got.to_string())
            });
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"{sst}\">{sst}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(&s.label),
            esc(&exp),
            esc(&got),
            esc(&s.detail)
        );
    }
    h.push_str("</table></details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::compare::Mismatch;
    use crate::scenarios::exec::StepOutcome;

    fn outcome(id: &str, status: Status, message: Option<&str>) -> Outcome {
        Outcome {
            id: id.into(),
            title: "a <title> & more".into(),
            tags: vec!["UNKNOWN_ACT".into()],
            file: "x.toml".into(),
            status,
            message: message.map(str::to_string),
            steps: vec![StepOutcome {
                label: "steps[0] create".into(),
                status,
                detail: "{}".into(),
                mismatch: (status == Status::Failed).then(|| Mismatch {
                    field: "result.sheet.amounts.amo_cents".into(),
                    expected: 1901.into(),
                    got: 1900.into(),
                }),
                ms: 3,
            }],
            ms: 1234,
        }
    }

    #[test]
    fn junit_has_one_testcase_per_scenario_and_the_failure_message_escaped() {
        let run = Run::new(
            "2026-12-07T00:00:00Z".into(),
            2000,
            vec![
                outcome("a", Status::Passed, None),
                outcome(
                    "b",
                    Status::Failed,
                    Some("steps[0] create: amo_cents: expected 1901, got 1900 <x>"),
                ),
                outcome("c", Status::Skipped, Some("needs root")),
            ],
        );
        assert_eq!((run.passed, run.failed, run.skipped), (1, 1, 1));
        let x = junit(&run);
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert_eq!(x.matches("<failure ").count(), 1);
        assert!(x.contains("expected 1901, got 1900 &lt;x&gt;"));
        assert!(x.contains("<skipped message=\"needs root\"/>"));
        assert!(x.contains("time=\"1.234\""));
        let h = html(&run);
        assert!(h.contains("a &lt;title&gt; &amp; more"));
        assert!(!h.contains("src=") && !h.contains("<link") && !h.contains("<script"));
    }
}
