//! The rights online step: `rights.get` answered over the spool by the insurer simulator, an
//! unknown beneficiary, and the rights folder made unusable under fsed.

use std::path::Path;

use serde_json::json;

use super::description::Conformance;
use crate::common::Rpc;

/// `rights.get` by NIR (online), `RIGHTS_UNKNOWN`, and `RIGHTS_STALE` when the spool's rights
/// folder cannot take a request.
pub(super) fn rights_online(c: &mut Conformance, rpc: &mut Rpc, dir: &Path) {
    // Jean DUPONT of vitale-famille, whom the insurer knows.
    let jean = fse_simulator::profiles::nir("1850578006084");
    let asked = json!({"nir": jean, "birth_date": "19850512", "rank": 1});
    let r = c.ok(rpc, "rights.get", asked.clone());
    assert_eq!(r["source"], "online", "{r}");
    assert_eq!(r["organism"], "017510001", "{r}");
    // A valid NIR the insurer does not know.
    let stranger = fse_simulator::profiles::nir("1900175000001");
    c.refused(
        rpc,
        "rights.get",
        json!({"nir": stranger, "birth_date": "19900101", "rank": 1}),
        1051,
        Some("vitale.rights"),
    );
    // The rights folder replaced by a file: no request can be written.
    let folder = dir.join("spool/outbox/rights");
    let aside = dir.join("spool/rights.aside");
    std::fs::rename(&folder, &aside).unwrap();
    std::fs::write(&folder, b"not a folder").unwrap();
    let mut refresh = asked;
    refresh["refresh"] = json!(true);
    let e = c.refused(rpc, "rights.get", refresh, 1050, Some("vitale.rights"));
    assert!(
        e["data"]["lookup"]
            .as_str()
            .unwrap()
            .contains("spool request not written"),
        "{e}"
    );
    std::fs::remove_file(&folder).unwrap();
    std::fs::rename(&aside, &folder).unwrap();
}
