//! Expected against got: the first mismatch of a step names the field, what was expected and
//! what came.

use serde_json::Value;

use super::model::Expect;

/// One difference between what a step expected and what it got.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mismatch {
    /// The field (`sheet.amounts.amo_cents`, `error.data.rule`, …).
    pub field: String,
    /// What the scenario expected.
    pub expected: Value,
    /// What came (`null`: absent).
    pub got: Value,
}

/// Member `path` (dotted; a number indexes an array) of `v`.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, part| match v {
        Value::Array(items) => items.get(part.parse::<usize>().ok()?),
        Value::Object(map) => map.get(part),
        _ => None,
    })
}

fn same(expected: &Value, got: &Value) -> bool {
    match (expected, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => expected == got,
    }
}

/// The checks of `expect` on a reply (`{"result": …}` or `{"error": …}`), in a fixed order:
/// success, error name, rule, field, state, amounts, other members.
pub fn check_reply(
    expect: &Expect,
    reply: &Value,
    resolve: &dyn Fn(Value) -> Value,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut check = |field: &str, expected: Value| {
        let got = at(reply, field).cloned().unwrap_or(Value::Null);
        if !same(&expected, &got) {
            out.push(Mismatch {
                field: field.to_string(),
                expected,
                got,
            });
        }
    };
    let is_error = reply.get("error").is_some();
    let wants_error = expect.error.is_some() || expect.rule.is_some() || expect.field.is_some();
    let ok = expect.ok.or(if wants_error { Some(false) } else { None });
    // A call expected to succeed is checked for an error first: its name tells the most.
    let ok = ok.or(Some(true));
    if ok == Some(true) && is_error {
        check("error.data.name", Value::Null);
        return out;
    }
    if ok == Some(false) && !is_error {
        check("error", Value::String("an error".into()));
        return out;
    }
    let text = |s: &Option<String>| s.clone().map(Value::String);
    for (field, v) in [
        ("error.data.name", text(&expect.error)),
        ("error.data.rule", text(&expect.rule)),
        ("error.data.field", text(&expect.field)),
        ("result.state", text(&expect.state)),
    ] {
        if let Some(v) = v {
            check(field, v);
        }
    }
    for (name, v) in [
        ("total_cents", expect.total_cents),
        ("amo_cents", expect.amo_cents),
        ("amc_cents", expect.amc_cents),
        ("patient_cents", expect.patient_cents),
        ("pf_cents", expect.pf_cents),
        ("due_cents", expect.due_cents),
        ("excess_cents", expect.excess_cents),
    ] {
        if let Some(v) = v {
            check(&format!("result.sheet.amounts.{name}"), Value::from(v));
        }
    }
    for (path, v) in &expect.result {
        let v = resolve(serde_json::to_value(v).unwrap_or(Value::Null));
        check(&format!("result.{path}"), v);
    }
    for path in &expect.absent {
        let field = format!("result.{path}");
        if let Some(got) = at(reply, &field) {
            out.push(Mismatch {
                field,
                expected: Value::String("absent".into()),
                got: got.clone(),
            });
        }
    }
    out
}

/// Whether an event carries every field `expect.fields` names, with its value.
pub fn event_matches(expect: &Expect, event: &Value, resolve: &dyn Fn(Value) -> Value) -> bool {
    expect.fields.iter().all(|(k, v)| {
        let v = resolve(serde_json::to_value(v).unwrap_or(Value::Null));
        at(event, k).is_some_and(|g| same(&v, g))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(text: &str) -> Expect {
        toml::from_str(text).unwrap()
    }

    fn id(v: Value) -> Value {
        v
    }

    #[test]
    fn one_cent_off_names_the_amount_with_both_figures() {
        // G at 30.00 €: AMO 70 % = 2100 − 200 participation = 1900.
        let reply = json!({"result": {"state": "accepted", "sheet": {"amounts": {"amo_cents": 1900, "total_cents": 3000}}}});
        assert!(
            check_reply(&expect("amo_cents = 1900\ntotal_cents = 3000"), &reply, &id).is_empty()
        );
        let m = check_reply(&expect("amo_cents = 1901"), &reply, &id);
        assert_eq!(
            m,
            vec![Mismatch {
                field: "result.sheet.amounts.amo_cents".into(),
                expected: json!(1901),
                got: json!(1900)
            }]
        );
    }

    #[test]
    fn a_refusal_is_checked_by_rule_and_field_and_an_unexpected_one_by_its_name() {
        let reply = json!({"error": {"code": 1010, "data": {"name": "RULE_VIOLATION", "rule": "UNKNOWN_ACT", "field": "acts[0].code"}}});
        assert!(check_reply(
            &expect("rule = \"UNKNOWN_ACT\"\nfield = \"acts[0].code\""),
            &reply,
            &id
        )
        .is_empty());
        let m = check_reply(&expect("rule = \"RIGHTS_CLOSED\""), &reply, &id);
        assert_eq!(m[0].field, "error.data.rule");
        assert_eq!(m[0].got, json!("UNKNOWN_ACT"));
        // Expected to succeed: the error's name is the mismatch.
        let m = check_reply(&expect("amo_cents = 1900"), &reply, &id);
        assert_eq!(m[0].field, "error.data.name");
        assert_eq!(m[0].got, json!("RULE_VIOLATION"));
        // Expected to fail, succeeded.
        let m = check_reply(&expect("ok = false"), &json!({"result": {}}), &id);
        assert_eq!(m[0].field, "error");
    }

    #[test]
    fn dotted_paths_reach_into_arrays_and_events_match_on_their_fields() {
        let reply = json!({"result": {"sheet": {"acts": [{"rate": 70}, {"rate": 100}]}}});
        assert!(check_reply(
            &expect("[result]\n\"sheet.acts.1.rate\" = 100"),
            &reply,
            &id
        )
        .is_empty());
        assert_eq!(
            check_reply(
                &expect("[result]\n\"sheet.acts.2.rate\" = 100"),
                &reply,
                &id
            )[0]
            .got,
            Value::Null
        );
        let e = expect("[fields]\nstatus = \"negative\"\nrejections = 1");
        assert!(event_matches(
            &e,
            &json!({"event": "arl.received", "status": "negative", "rejections": 1}),
            &id
        ));
        assert!(!event_matches(
            &e,
            &json!({"event": "arl.received", "status": "positive", "rejections": 0}),
            &id
        ));
    }
}
