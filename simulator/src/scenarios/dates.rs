//! Relative dates in scenarios: `today`, `today-N`, `today+N` (days) become `YYYYMMDD` (UTC,
//! the day fsed prices on).

use chrono::{Duration, NaiveDate};
use serde_json::Value;

/// `text` as a date when it is `today`, `today-N` or `today+N`; `None` otherwise.
pub fn resolve(text: &str, today: NaiveDate) -> Option<String> {
    let rest = text.strip_prefix("today")?;
    let days: i64 = if rest.is_empty() {
        0
    } else if let Some(n) = rest.strip_prefix('-') {
        -n.parse::<i64>().ok()?
    } else {
        rest.strip_prefix('+')?.parse().ok()?
    };
    let day = today.checked_add_signed(Duration::try_days(days)?)?;
    Some(day.format("%Y%m%d").to_string())
}

/// Every string of `value` that is a relative date, replaced by the date.
pub fn resolve_all(value: &mut Value, today: NaiveDate) {
    match value {
        Value::String(s) => {
            if let Some(d) = resolve(s, today) {
                *s = d;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve_all(v, today)),
        Value::Object(map) => map.values_mut().for_each(|v| resolve_all(v, today)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dates_are_counted_in_days_across_months_and_years() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        assert_eq!(resolve("today", today).as_deref(), Some("20260102"));
        // 2 January − 3 days = 30 December of the year before.
        assert_eq!(resolve("today-3", today).as_deref(), Some("20251230"));
        // 2 January + 30 days = 1 February.
        assert_eq!(resolve("today+30", today).as_deref(), Some("20260201"));
        assert_eq!(resolve("todayx", today), None);
        assert_eq!(resolve("today-", today), None);
        assert_eq!(resolve("G", today), None);
        let mut v = serde_json::json!({"acts": [{"date": "today-1", "code": "G"}]});
        resolve_all(&mut v, today);
        assert_eq!(v["acts"][0]["date"], "20260101");
        assert_eq!(v["acts"][0]["code"], "G");
    }
}
