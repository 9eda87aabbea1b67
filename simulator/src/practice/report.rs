//! The summary of a run: counts, rates, latency percentiles, and its human form.

use std::collections::BTreeMap;

/// The result of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Practices (connections).
    pub practices: usize,
    /// Sheets asked for.
    pub requested: u64,
    /// Sheets created.
    pub created: u64,
    /// Requests refused or failed, by error code (`data.rule` when fsed gives one).
    pub errors: BTreeMap<String, u64>,
    /// Seconds from the first request to the last answer.
    pub seconds: f64,
    /// Sheets created per second.
    pub sheets_per_second: f64,
    /// `fse.create` latency percentiles, milliseconds.
    pub latency_ms: Percentiles,
    /// Sheets broker-confirmed (or spooled), once `--wait sent` or `acknowledged`.
    pub sent: Option<u64>,
    /// Sheets per second from the first request until the last of them was confirmed.
    pub end_to_end_sheets_per_second: Option<f64>,
    /// Sheets whose lot has its ARL, once `--wait acknowledged`.
    pub acknowledged: Option<u64>,
    /// Latency from the request to its lot's ARL, once `--wait acknowledged`.
    pub arl_latency_ms: Option<Percentiles>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// Percentiles of durations given in microseconds (sorted in place).
pub(super) fn percentiles(us: &mut [u64]) -> Percentiles {
    if us.is_empty() {
        return Percentiles::default();
    }
    us.sort_unstable();
    let at = |q: f64| {
        let i = ((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1;
        us[i] as f64 / 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// The summary as a few human lines.
pub fn human(s: &Summary) -> String {
    let mut out = format!(
        "practices: {}\nsheets created: {} of {} in {:.2} s = {:.0} sheets/s\nfse.create latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
        s.practices, s.created, s.requested, s.seconds, s.sheets_per_second,
        s.latency_ms.p50, s.latency_ms.p90, s.latency_ms.p99, s.latency_ms.max
    );
    if s.errors.is_empty() {
        out.push_str("errors: none\n");
    } else {
        for (code, n) in &s.errors {
            out.push_str(&format!("errors {code}: {n}\n"));
        }
    }
    if let (Some(sent), Some(rate)) = (s.sent, s.end_to_end_sheets_per_second) {
        out.push_str(&format!(
            "sheets confirmed by the broker: {sent} — {rate:.0} sheets/s end to end\n"
        ));
    }
    if let (Some(n), Some(p)) = (s.acknowledged, &s.arl_latency_ms) {
        out.push_str(&format!(
            "create → ARL latency ms ({n} sheets): p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n",
            p.p50, p.p90, p.p99, p.max
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_ranked_values() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(percentiles(&mut []).max, 0.0);
    }
}
