//! `workstations.*`: enrollment of the practice's workstations (`daemon/API.md`, "Network
//! API"). Served on the local socket only: `net::rights` refuses them to every workstation.

use std::sync::Arc;

use fse_formats::api;
use serde_json::{json, Value};

use crate::api::params::{no_params, params};
use crate::context::Context;
use crate::error::ApiError;
use crate::net::enroll::{self, PairError, DEFAULT_VALID_SECS, MAX_VALID_SECS};

use super::to_value;

/// `workstations.pair`: a one-time code for workstation `name`, valid `valid_secs` (600 by
/// default), and the enrollment listener's address and the CA's fingerprint.
pub(in crate::api) async fn pair(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        name: String,
        valid_secs: Option<u64>,
    }
    let P { name, valid_secs } = params(p)?;
    let valid = valid_secs.unwrap_or(DEFAULT_VALID_SECS);
    if !(1..=MAX_VALID_SECS).contains(&valid) {
        return Err(ApiError::invalid(
            "valid_secs",
            format!("invalid params: valid_secs: 1 to {MAX_VALID_SECS} seconds"),
        ));
    }
    let net = Arc::clone(&ctx.network);
    // Making the CA the first time and binding the listener touch the disk: off the runtime.
    let paired = tokio::task::spawn_blocking(move || enroll::pair(&net, &name, valid))
        .await
        .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))?;
    match paired {
        Ok(p) => to_value(p),
        Err(PairError::Name(reason)) => Err(ApiError::invalid(
            "name",
            format!("invalid params: name: {reason}"),
        )),
        Err(e @ PairError::NoAddress) => Err(ApiError::new(
            api::INVALID_REQUEST,
            e.to_string(),
            Some("network.listen"),
        )),
        Err(PairError::Net(e)) => Err(ApiError::new(api::INTERNAL_ERROR, e.to_string(), None)),
    }
}

/// `workstations.list`: every certificate issued, with its workstation's open connections.
pub(in crate::api) async fn list(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    no_params(p)?;
    let net = &ctx.network;
    let now = chrono::Utc::now().timestamp();
    let entries: Vec<Value> = net
        .store
        .all()
        .into_iter()
        .map(|e| {
            let connections = if e.revoked_at.is_none() {
                net.connections(&e.name)
            } else {
                0
            };
            json!({
                "name": e.name, "fingerprint": e.fingerprint, "serial": e.serial,
                "not_after": e.not_after, "enrolled_at": e.enrolled_at,
                "revoked_at": e.revoked_at, "connected": connections > 0,
                "connections": connections,
            })
        })
        .collect();
    Ok(json!({
        "workstations": entries,
        "pending_codes": net.enroll.pending(now),
        "listen": net.bound().map(|a| a.to_string()),
    }))
}

/// `workstations.revoke`: the workstation's certificates refused from the next handshake, its
/// open connections closed.
pub(in crate::api) async fn revoke(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        name: String,
    }
    let P { name } = params(p)?;
    let net = Arc::clone(&ctx.network);
    if !net.store.all().iter().any(|e| e.name == name) {
        return Err(ApiError::new(
            api::NOT_FOUND,
            format!("no workstation {name} is enrolled"),
            Some("name"),
        ));
    }
    let who = name.clone();
    let revoked = tokio::task::spawn_blocking(move || net.revoke(&who))
        .await
        .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))?
        .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))?;
    Ok(json!({ "name": name, "revoked": revoked }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::test_support::{ask, context};

    #[tokio::test]
    async fn without_an_address_no_code_is_made_and_unknown_names_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"workstations.pair","params":{"name":"reception"}}"#,
        )
        .await;
        assert_eq!(r["error"]["code"], json!(-32600), "{r}");
        assert_eq!(r["error"]["data"]["field"], "network.listen", "{r}");
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":2,"method":"workstations.pair","params":{"name":"Bad Name"}}"#,
        )
        .await;
        assert_eq!(r["error"]["data"]["field"], "name", "{r}");
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":3,"method":"workstations.revoke","params":{"name":"nobody"}}"#,
        )
        .await;
        assert_eq!(r["error"]["code"], json!(1020), "{r}");
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":4,"method":"workstations.list"}"#,
        )
        .await;
        assert_eq!(r["result"]["workstations"], json!([]), "{r}");
    }
}
