//! A method's parameters decoded from a request: by name, a refusal naming the field by its
//! path (`acts[1].date`), an integer never read from a fraction or an exponent, a secret value
//! never echoed and wiped once read.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::jsonrpc::{scrub, shown};
use crate::error::ApiError;

/// Parameters decoded into `T` from `p` (absent or null: `{}`). Parameters go by name: an
/// array is refused. A refusal names the field by its path (`act.code`, `acts[1].date`); for
/// `secret` parameters the value at fault is not echoed.
pub(super) fn decode<T: DeserializeOwned>(p: &Value, secret: bool) -> Result<T, ApiError> {
    let empty = Value::Object(Default::default());
    let p = match p {
        Value::Null => &empty,
        Value::Array(_) => {
            return Err(ApiError::invalid(
                "params",
                "invalid params: parameters go by name, in an object",
            ))
        }
        other => other,
    };
    serde_path_to_error::deserialize(p).map_err(|e| {
        let reason = e.inner().to_string();
        let path = e.path().to_string();
        // An unknown or missing member is named in the message; the path is its parent's, or
        // its own for an unknown member. A member named "" leaves its parent as the field.
        let named = member_named(&reason);
        let field = match (path.as_str(), named) {
            (at, Some("")) => match at.strip_suffix('.') {
                Some(parent) if !parent.is_empty() => parent.to_string(),
                _ => "params".to_string(),
            },
            (".", Some(n)) => n.to_string(),
            ("." | "", None) => "params".to_string(),
            (parent, Some(n)) if parent != n && !parent.ends_with(&format!(".{n}")) => {
                format!("{parent}.{n}")
            }
            (at, _) => at.to_string(),
        };
        let reason = if secret && named.is_none() {
            "wrong type or value (not shown: it may be secret)".to_string()
        } else if let Some(integer) = integer_expected(&reason) {
            integer
        } else {
            shown(&reason)
        };
        let field = shown(&field);
        ApiError::invalid(&field, format!("invalid params: {field}: {reason}"))
    })
}

/// The reason given for a number with a fraction or an exponent (`1500.0`, `1500.5`, `1e3`)
/// or beyond 2^64 where an integer goes: serde reads such a number as a double, and says
/// `invalid type: floating point `1500.0`, expected u64`. fsed refuses it rather than
/// round it: a double cannot tell `1500.0000000000000001` from `1500`.
fn integer_expected(reason: &str) -> Option<String> {
    let rest = reason.strip_prefix("invalid type: floating point `")?;
    let (number, expected) = rest.split_once("`, expected ")?;
    let integer = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
    ];
    let range = expected.strip_prefix("an integer ").unwrap_or(expected);
    integer.contains(&range).then(|| {
        format!(
            "an integer is expected ({range}), written without a fraction or an exponent: got {}",
            shown(number)
        )
    })
}

/// The member a serde message names: `unknown field `x`, expected …` or `missing field `x``
/// (the name may itself hold backquotes).
fn member_named(reason: &str) -> Option<&str> {
    if let Some(rest) = reason.strip_prefix("unknown field `") {
        let end = rest
            .rfind("`, expected")
            .or_else(|| rest.rfind("`, there are no fields"))?;
        Some(&rest[..end])
    } else {
        reason.strip_prefix("missing field `")?.strip_suffix('`')
    }
}

/// Parameters decoded into `T` (see [`decode`]).
pub(super) fn params<T: DeserializeOwned>(p: Option<Value>) -> Result<T, ApiError> {
    decode(&p.unwrap_or(Value::Null), false)
}

/// For a method without parameters: absent, null or `{}`; any member is refused by name.
pub(super) fn no_params(p: Option<Value>) -> Result<(), ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct None_ {}
    params::<None_>(p).map(|_| ())
}

/// Parses parameters that hold secrets, then wipes every string of the raw parameters.
pub(super) fn secret_params<T: DeserializeOwned>(p: Option<Value>) -> Result<T, ApiError> {
    let mut raw = p.unwrap_or(Value::Null);
    let parsed = decode(&raw, true);
    scrub(&mut raw);
    parsed
}

#[cfg(test)]
mod tests {
    use fse_formats::api;
    use serde_json::{json, Value};

    use crate::api::test_support::{ask, context};

    #[tokio::test]
    async fn invalid_params_name_the_field_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let field = |r: &Value| {
            assert_eq!(r["error"]["code"], json!(api::INVALID_PARAMS), "{r}");
            r["error"]["data"]["field"].as_str().unwrap().to_string()
        };
        for (params, expected) in [
            (r#"{"act":{"code":5}}"#, "act.code"),
            (
                r#"{"acts":[{"code":"G"},{"code":"G","date":5}]}"#,
                "acts[1].date",
            ),
            (r#"{"act":{"code":"G","colour":1}}"#, "act.colour"),
            (r#"{"act":{"code":"G"},"extra":1}"#, "extra"),
            (r#"{"act":{"coefficient":100}}"#, "act.code"),
            (r#"{"act":{"code":"G"},"care_path":"nowhere"}"#, "care_path"),
            (r#"{"act":{"code":"G"},"beneficiary":-1}"#, "beneficiary"),
            (r#"{"act":{"code":"G"},"":1}"#, "params"),
            (r#"{"act":{"code":"G","":1}}"#, "act"),
            (r#"{"act":{"code":"G"},"a`b, expected":1}"#, "a`b, expected"),
        ] {
            let line =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.create","params":{params}}}"#);
            assert_eq!(field(&ask(&ctx, &line).await), expected, "{params}");
        }
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"queue.stats","params":{"x":1}}"#,
        )
        .await;
        assert_eq!(field(&r), "x");
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"queue.stats","params":{}}"#,
        )
        .await;
        assert!(r["result"]["sheets"].is_object(), "{r}");
        // Messages echo a bounded part of what they refuse.
        let long = "é".repeat(10_000);
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"fse.list","params":{{"state":"{long}"}}}}"#
        );
        let r = ask(&ctx, &line).await;
        assert_eq!(field(&r), "state");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.chars().count() < 300, "{message}");
        let line =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.get","params":{{"id":"{long}"}}}}"#);
        let message = ask(&ctx, &line).await["error"]["message"].to_string();
        assert!(message.chars().count() < 300, "{message}");
        // A PIN of the wrong type is not echoed.
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"cards.verify_pin","params":{"pin":9876}}"#,
        )
        .await;
        assert_eq!(field(&r), "pin");
        assert!(!r.to_string().contains("9876"), "{r}");
    }

    #[tokio::test]
    async fn an_integer_written_with_a_fraction_or_an_exponent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        for (params, field) in [
            (
                r#"{"act":{"code":"G","excess_cents":1500.0}}"#,
                "act.excess_cents",
            ),
            (
                r#"{"act":{"code":"G","excess_cents":1500.5}}"#,
                "act.excess_cents",
            ),
            (
                r#"{"act":{"code":"G","excess_cents":1e3}}"#,
                "act.excess_cents",
            ),
            (
                r#"{"act":{"code":"G","coefficient":100.0}}"#,
                "act.coefficient",
            ),
            (r#"{"act":{"code":"G"},"beneficiary":0.0}"#, "beneficiary"),
            (
                r#"{"act":{"code":"G"},"expected":{"total_cents":3000.0}}"#,
                "expected.total_cents",
            ),
            // 2^64: an integer, but none a u64 holds.
            (
                r#"{"act":{"code":"G","excess_cents":18446744073709551616}}"#,
                "act.excess_cents",
            ),
        ] {
            let line =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.create","params":{params}}}"#);
            let r = ask(&ctx, &line).await;
            assert_eq!(
                r["error"]["code"],
                json!(api::INVALID_PARAMS),
                "{params}: {r}"
            );
            assert_eq!(r["error"]["data"]["field"], json!(field), "{params}: {r}");
            let message = r["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("an integer is expected")
                    && message.contains("without a fraction or an exponent"),
                "{message}"
            );
        }
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"fse.get","params":{"id":1.0}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["field"], json!("id"), "{r}");
        // The integer itself goes through (to the cards, absent here).
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"fse.create","params":{"act":{"code":"G","excess_cents":1500}}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["name"], json!("CARD_ABSENT"), "{r}");
    }
}
