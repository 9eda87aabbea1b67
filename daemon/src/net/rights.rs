//! What a workstation may do over the network: the methods of its
//! `[network.workstations.<name>]` entry (exact names or `group.*`) and the CPS it may use,
//! or, without an entry, [`DEFAULT_METHODS`] and no CPS. [`NEVER`] is refused to every
//! workstation. Checked by `api::dispatch` before a handler runs, for workstations only.

use fse_formats::api::{self, ErrorObject};
use serde_json::{json, Value};

use crate::config::WorkstationRights;

/// What a workstation without a rights entry may call: reading only, no CPS.
pub const DEFAULT_METHODS: &[&str] = &[
    "cards.list",
    "vitale.read",
    "fse.get",
    "fse.list",
    "lots.list",
    "lots.get",
    "returns.list",
    "fse.status",
    "payments.list",
    "queue.stats",
    "system.version",
    "events.subscribe",
];

/// Never allowed over the network, whatever the rights say: the enrollment's own methods
/// (`workstations.*`), the database copy and the full store check (local administration).
pub const NEVER: &[&str] = &["workstations.*", "queue.backup", "store.verify"];

/// The methods that use a CPS: the workstation must have that CPS among its `cps`.
pub const CPS_METHODS: &[&str] = &[
    "cards.verify_pin",
    "cards.pin_status",
    "cards.change_pin",
    "cards.unblock_pin",
    "fse.create",
    "presence.challenge",
    "cards.sign",
    "cards.lock",
    "cards.unlock",
];

/// The card-sharing and remote-card methods (issue 21), known to the rights before their
/// handlers are all in `api::METHODS`, so that a configuration may name them.
const CARD_SHARING_METHODS: &[&str] = &[
    "cards.lock",
    "cards.unlock",
    "cards.sign",
    "cards.authenticate",
];

/// Whether `pattern` (an exact name or `group.*`) covers `method`.
fn covers(pattern: &str, method: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(group) => method
            .strip_prefix(group)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == method,
    }
}

/// Why `pattern` cannot be in a workstation's `methods`: it names no method served, or one
/// never allowed over the network.
pub fn method_pattern_problem(pattern: &str) -> Result<(), String> {
    if NEVER.iter().any(|n| covers(n, pattern)) {
        return Err("never allowed over the network".into());
    }
    let known = crate::api::METHODS
        .iter()
        .chain(CARD_SHARING_METHODS)
        .any(|m| covers(pattern, m));
    if known {
        Ok(())
    } else {
        Err("names no method fsed serves".into())
    }
}

/// Whether a workstation with `rights` (none: the default) may call `method`.
pub fn method_allowed(rights: Option<&WorkstationRights>, method: &str) -> bool {
    if NEVER.iter().any(|n| covers(n, method)) {
        return false;
    }
    match rights {
        Some(r) => r.methods.iter().any(|p| covers(p, method)),
        None => DEFAULT_METHODS.contains(&method),
    }
}

/// Whether a workstation with `rights` may use the CPS `serial`.
pub fn cps_allowed(rights: Option<&WorkstationRights>, serial: &str) -> bool {
    rights.is_some_and(|r| r.cps.iter().any(|s| s == serial))
}

/// The serial of the CPS a request names (`cps_serial`, or `serial` for the card methods).
pub fn named_cps(params: Option<&Value>) -> Option<String> {
    let p = params?;
    p.get("cps_serial")
        .or_else(|| p.get("serial"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The refusal of `method` to workstation `name`.
pub fn method_refused(name: &str, method: &str) -> ErrorObject {
    ErrorObject::new(
        api::NOT_PERMITTED,
        format!("workstation {name} may not call {method} (network.workstations.{name}.methods)"),
        None,
    )
    .with("workstation", json!(name))
    .with("method", json!(method))
}

/// The refusal of the CPS `serial` to workstation `name`.
pub fn cps_refused(name: &str, serial: &str) -> ErrorObject {
    ErrorObject::new(
        api::NOT_PERMITTED,
        format!(
            "workstation {name} may not use the CPS {serial} (network.workstations.{name}.cps)"
        ),
        None,
    )
    .with("workstation", json!(name))
    .with("cps_serial", json!(serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rights(methods: &[&str], cps: &[&str]) -> WorkstationRights {
        WorkstationRights {
            methods: methods.iter().map(|s| s.to_string()).collect(),
            cps: cps.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn groups_cover_their_methods_only() {
        assert!(covers("cards.*", "cards.verify_pin"));
        assert!(!covers("cards.*", "cardsx.list"));
        assert!(!covers("cards.*", "vitale.read"));
        assert!(covers("fse.create", "fse.create"));
        assert!(!covers("fse.create", "fse.cancel"));
    }

    #[test]
    fn the_default_reads_and_never_is_never() {
        assert!(method_allowed(None, "vitale.read"));
        assert!(method_allowed(None, "events.subscribe"));
        assert!(!method_allowed(None, "fse.create"));
        assert!(!method_allowed(None, "cards.verify_pin"));
        let all = rights(&["fse.*", "queue.*", "store.*"], &["CPS1"]);
        assert!(method_allowed(Some(&all), "fse.create"));
        assert!(!method_allowed(Some(&all), "queue.backup"));
        assert!(!method_allowed(Some(&all), "store.verify"));
        assert!(!method_allowed(Some(&all), "workstations.list"));
        assert!(method_allowed(Some(&all), "queue.stats"));
        assert!(cps_allowed(Some(&all), "CPS1"));
        assert!(!cps_allowed(Some(&all), "CPS2"));
        assert!(!cps_allowed(None, "CPS1"));
    }

    #[test]
    fn a_pattern_must_name_a_method_that_may_be_allowed() {
        assert!(method_pattern_problem("cards.*").is_ok());
        assert!(method_pattern_problem("fse.create").is_ok());
        assert!(method_pattern_problem("nope.*").is_err());
        assert!(method_pattern_problem("workstations.pair").is_err());
        assert!(method_pattern_problem("queue.backup").is_err());
        // `queue.*` covers queue.backup, which stays refused; the pattern itself is fine.
        assert!(method_pattern_problem("queue.*").is_ok());
    }

    #[test]
    fn a_refusal_names_the_workstation_and_the_method_or_the_cps() {
        let e = method_refused("reception", "fse.create");
        assert_eq!(e.code, 1044);
        assert_eq!(e.data.as_ref().unwrap()["workstation"], "reception");
        assert_eq!(e.data.as_ref().unwrap()["method"], "fse.create");
        let e = cps_refused("reception", "801234567");
        assert!(e.message.contains("801234567"), "{}", e.message);
        assert_eq!(e.data.as_ref().unwrap()["cps_serial"], "801234567");
    }
}
