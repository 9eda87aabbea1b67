//! What the insurer received, as a report: the JSON of every lot and the counters, and a
//! self-contained HTML page of it (`--report DIR`).

use std::collections::BTreeMap;
use std::path::Path;

use super::Insurer;

impl Insurer {
    /// Everything received, as the JSON report: the counters, every lot (time, size,
    /// status, codes) and the lots and sheets per second.
    pub fn full_report(&self) -> serde_json::Value {
        let mut per_second: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for l in &self.lots {
            let e = per_second.entry(l.at_ms / 1000).or_default();
            e.0 += 1;
            e.1 += l.sheets;
        }
        serde_json::json!({
            "insurer": self.name,
            "summary": self.report,
            "timeline": per_second.iter().map(|(s, (lots, sheets))| serde_json::json!({"second": s, "lots": lots, "sheets": sheets})).collect::<Vec<_>>(),
            "lots": self.lots,
        })
    }
}

/// A self-contained HTML page (inline SVG, no script, nothing fetched) of a
/// [`Insurer::full_report`]: lots and sheets per second over time, and rejections by reason.
pub fn report_html(report: &serde_json::Value) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let timeline: Vec<(u64, u64, u64)> = report["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["second"].as_u64().unwrap_or(0),
                t["lots"].as_u64().unwrap_or(0),
                t["sheets"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let (w, h, pad) = (720.0_f64, 240.0_f64, 40.0_f64);
    let last = timeline.last().map_or(1, |t| t.0.max(1)) as f64;
    let top_sheets = timeline.iter().map(|t| t.2).max().unwrap_or(1).max(1) as f64;
    let top_lots = timeline.iter().map(|t| t.1).max().unwrap_or(1).max(1) as f64;
    let line = |pick: &dyn Fn(&(u64, u64, u64)) -> f64, top: f64| {
        timeline
            .iter()
            .map(|t| {
                let x = pad + (t.0 as f64 / last) * (w - 2.0 * pad);
                let y = h - pad - pick(t) / top * (h - 2.0 * pad);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let sheets_line = line(&|t| t.2 as f64, top_sheets);
    let lots_line = line(&|t| t.1 as f64, top_lots);
    let reasons: Vec<(String, u64)> = report["summary"]["rejections"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect();
    let top_reason = reasons.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let bars: String = reasons
        .iter()
        .enumerate()
        .map(|(i, (code, n))| {
            let y = 10.0 + i as f64 * 26.0;
            let len = *n as f64 / top_reason * 420.0;
            format!(
                "<text x=\"0\" y=\"{:.0}\">{}</text><rect x=\"200\" y=\"{:.0}\" width=\"{len:.1}\" height=\"18\" fill=\"#c0392b\"/><text x=\"{:.0}\" y=\"{:.0}\">{n}</text>",
                y + 14.0,
                esc(code),
                y,
                205.0 + len,
                y + 14.0
            )
        })
        .collect();
    let s = &report["summary"];
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fse-sim insurer report</title>\n\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>\n\
<h1>Insurer {name}: what was received</h1>\n\
<table><tr><th>lots received</th><th>duplicates</th><th>positive ARLs</th><th>negative ARLs</th><th>sheets</th><th>paid</th><th>refused</th><th>malformed replies sent</th></tr>\n\
<tr><td>{received}</td><td>{duplicates}</td><td>{positive}</td><td>{negative}</td><td>{sheets}</td><td>{paid}</td><td>{refused}</td><td>{malformed}</td></tr></table>\n\
<h2>Lots and sheets per second</h2>\n\
<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"lots and sheets per second\">\
<line x1=\"{pad}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\" stroke=\"#333\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{base}\" stroke=\"#333\"/>\
<polyline id=\"sheets\" fill=\"none\" stroke=\"#2471a3\" stroke-width=\"2\" points=\"{sheets_line}\"/>\
<polyline id=\"lots\" fill=\"none\" stroke=\"#28b463\" stroke-width=\"2\" points=\"{lots_line}\"/>\
<text x=\"{pad}\" y=\"20\" fill=\"#2471a3\">sheets/s (max {top_sheets})</text><text x=\"300\" y=\"20\" fill=\"#28b463\">lots/s (max {top_lots})</text>\
<text x=\"{pad}\" y=\"{label}\">0 s</text><text x=\"{right}\" y=\"{label}\" text-anchor=\"end\">{last} s</text></svg>\n\
<h2>Rejections by reason</h2>\n\
<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"{bars_h}\" role=\"img\" aria-label=\"rejections by reason\">{bars}</svg>\n\
{none}</body></html>\n",
        name = esc(report["insurer"].as_str().unwrap_or_default()),
        received = s["received"],
        duplicates = s["duplicates"],
        positive = s["positive"],
        negative = s["negative"],
        sheets = s["sheets"],
        paid = s["paid"],
        refused = s["refused"],
        malformed = s["malformed"],
        base = h - pad,
        right = w - pad,
        label = h - pad + 16.0,
        bars_h = 20 + reasons.len() * 26,
        none = if reasons.is_empty() { "<p>No rejection.</p>\n" } else { "" },
    )
}

/// Writes `report.json` and `report.html` into `dir`.
pub fn write_report(insurer: &Insurer, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = insurer.full_report();
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&json).map_err(std::io::Error::other)?,
    )?;
    std::fs::write(dir.join("report.html"), report_html(&json))
}
