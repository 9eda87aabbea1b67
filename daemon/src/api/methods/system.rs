//! `system.*`: the service's name, version and methods, and its self-diagnosis.

use serde_json::{json, Value};

use crate::api::dispatch::METHODS;
use crate::api::params::{no_params, params};
use crate::context::Context;
use crate::error::ApiError;

use super::to_value;

/// `system.version`: the name, version, API version and methods served.
pub(in crate::api) async fn version(p: Option<Value>) -> Result<Value, ApiError> {
    no_params(p)?;
    Ok(json!({
        "name": "fsed", "version": env!("CARGO_PKG_VERSION"), "api": 1, "methods": METHODS,
    }))
}

/// `system.doctor`: every check of the self-diagnosis (`thorough`: the full integrity check too).
pub(in crate::api) async fn doctor(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        thorough: bool,
    }
    let P { thorough } = params(p)?;
    to_value(crate::doctor::run(ctx, &ctx.doctor, thorough).await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::test_support::{ask, context};

    #[tokio::test]
    async fn doctor_reports_every_check_with_the_worst_status() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":1,"method":"system.doctor"}"#).await;
        let checks = r["result"]["checks"].as_array().unwrap();
        let status = |name: &str| {
            checks
                .iter()
                .find(|c| c["check"] == name)
                .map(|c| c["status"].clone())
        };
        assert_eq!(status("database"), Some(json!("ok")), "{r}");
        assert_eq!(status("broker"), Some(json!("ok")), "{r}");
        assert_eq!(status("backlog"), Some(json!("ok")), "{r}");
        assert!(status("disk").is_some(), "{r}");
        // No trust store here: every return would be refused, which the doctor says.
        assert_eq!(status("returns"), Some(json!("warning")), "{r}");
        // No card in the virtual reader: a warning with its fix, and so the overall verdict.
        let cards = checks.iter().find(|c| c["check"] == "cards").unwrap();
        assert_eq!(cards["status"], "warning", "{r}");
        assert!(cards["fix"].as_str().unwrap().contains("CPS"), "{r}");
        assert_eq!(r["result"]["status"], "warning", "{r}");
        // The spool's outbox gone: the transport check fails and says which directory.
        std::fs::remove_dir_all(dir.path().join("out")).unwrap();
        let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":2,"method":"system.doctor"}"#).await;
        assert_eq!(r["result"]["status"], "failure", "{r}");
        let broker = r["result"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "broker")
            .unwrap()
            .clone();
        assert!(
            broker["detail"].as_str().unwrap().contains("out"),
            "{broker}"
        );
    }
}
