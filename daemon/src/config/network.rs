//! `[network]`: the network API (mutual TLS 1.3), its enrollment listener, the practice CA's
//! directory and each workstation's rights (`[network.workstations.<name>]`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Default lifetime of a workstation certificate, in days (the CA/Browser Forum's old cap).
pub const DEFAULT_CERTIFICATE_DAYS: u32 = 825;
/// Longest lifetime of a workstation certificate, in days (ten years).
pub const MAX_CERTIFICATE_DAYS: u32 = 3650;
/// Longest workstation name, in characters.
pub const MAX_WORKSTATION_NAME: usize = 64;

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Address of the network API (`192.168.1.10:7443`; port 0: any free port, logged and
    /// shown by the doctor). Unset: no network listener (the default).
    pub listen: Option<SocketAddr>,
    /// Address of the enrollment listener, open only while a pairing code is pending. Unset:
    /// `listen`'s IP with its port + 1 (port 0 stays 0).
    pub enroll_listen: Option<SocketAddr>,
    /// The practice CA and the enrolled workstations; relative paths are under `state_dir`.
    pub dir: PathBuf,
    /// Lifetime of a workstation certificate, in days (1 to 3650).
    pub certificate_days: u32,
    /// DNS names or IP addresses the server certificate carries besides `fsed.practice`.
    pub server_names: Vec<String>,
    /// Each workstation's rights, by its enrolled name. A workstation without an entry gets
    /// the read-only default (`net::rights::DEFAULT_METHODS`, no CPS).
    pub workstations: BTreeMap<String, WorkstationRights>,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: None,
            enroll_listen: None,
            dir: PathBuf::from("network"),
            certificate_days: DEFAULT_CERTIFICATE_DAYS,
            server_names: Vec::new(),
            workstations: BTreeMap::new(),
        }
    }
}

/// `[network.workstations.<name>]`: what one workstation may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkstationRights {
    /// Methods it may call: exact names (`fse.create`) or a group (`cards.*`).
    pub methods: Vec<String>,
    /// Serials of the CPS it may use (PIN methods, `fse.create`'s CPS, signing, locking).
    pub cps: Vec<String>,
}

impl NetworkSection {
    /// The enrollment listener's address: `enroll_listen`, or `listen` with port + 1.
    pub fn enroll_address(&self) -> Option<SocketAddr> {
        self.enroll_listen.or_else(|| {
            self.listen.map(|mut a| {
                if a.port() != 0 {
                    a.set_port(a.port().saturating_add(1));
                }
                a
            })
        })
    }

    /// Every value that cannot work, each with its key.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut bad = |key: String, reason: String| {
            out.push(ConfigError::Key {
                key,
                origin: "the configuration".into(),
                reason,
            })
        };
        if self.dir.as_os_str().is_empty() {
            bad("network.dir".into(), "must not be empty".into());
        }
        if !(1..=MAX_CERTIFICATE_DAYS).contains(&self.certificate_days) {
            bad(
                "network.certificate_days".into(),
                format!("1 to {MAX_CERTIFICATE_DAYS} days"),
            );
        }
        if let (Some(listen), Some(enroll)) = (self.listen, self.enroll_address()) {
            if listen == enroll && listen.port() != 0 {
                bad(
                    "network.enroll_listen".into(),
                    format!("{enroll} is the API's own address (network.listen)"),
                );
            }
        }
        for name in &self.server_names {
            if let Err(reason) = server_name_problem(name) {
                bad("network.server_names".into(), format!("{name:?}: {reason}"));
            }
        }
        for (name, rights) in &self.workstations {
            let key = format!("network.workstations.{name}");
            if let Err(reason) = workstation_name_problem(name) {
                bad(key.clone(), reason);
            }
            for m in &rights.methods {
                if let Err(reason) = crate::net::rights::method_pattern_problem(m) {
                    bad(format!("{key}.methods"), format!("{m:?}: {reason}"));
                }
            }
            for serial in &rights.cps {
                if serial.trim().is_empty() || serial.len() > 64 {
                    bad(
                        format!("{key}.cps"),
                        format!("{serial:?}: a CPS serial of 1 to 64 characters"),
                    );
                }
            }
        }
        out
    }
}

/// Why `name` cannot be a workstation's name: 1 to 64 of `a-z`, `0-9`, `-`, `_`, `.`, not
/// starting with a dot or a dash (it is a certificate's CN and a TOML key).
pub fn workstation_name_problem(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_WORKSTATION_NAME {
        return Err(format!(
            "a workstation name has 1 to {MAX_WORKSTATION_NAME} characters"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Err("a workstation name has only a-z, 0-9, '-', '_' and '.'".into());
    }
    if name.starts_with(['.', '-']) {
        return Err("a workstation name starts with a letter, a digit or '_'".into());
    }
    Ok(())
}

/// Why `name` cannot be in the server certificate: neither an IP address nor a DNS name.
fn server_name_problem(name: &str) -> Result<(), String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if labels_ok {
        Ok(())
    } else {
        Err("neither an IP address nor a DNS name".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enrollment_address_follows_the_api_s() {
        let mut n = NetworkSection::default();
        assert_eq!(n.enroll_address(), None);
        n.listen = Some("127.0.0.1:7443".parse().unwrap());
        // 7443 + 1 = 7444.
        assert_eq!(n.enroll_address(), Some("127.0.0.1:7444".parse().unwrap()));
        n.listen = Some("127.0.0.1:0".parse().unwrap());
        assert_eq!(n.enroll_address(), Some("127.0.0.1:0".parse().unwrap()));
        n.enroll_listen = Some("10.0.0.1:9000".parse().unwrap());
        assert_eq!(n.enroll_address(), Some("10.0.0.1:9000".parse().unwrap()));
        assert!(n.problems().is_empty());
    }

    #[test]
    fn every_bad_value_is_named_by_its_key() {
        let toml = r#"
            listen = "127.0.0.1:7443"
            enroll_listen = "127.0.0.1:7443"
            certificate_days = 0
            server_names = ["fsed.lan", "bad name"]
            [workstations.Reception]
            methods = ["vitale.read", "nope.*", "workstations.list"]
            cps = [""]
        "#;
        let n: NetworkSection = toml::from_str(toml).unwrap();
        let keys: Vec<String> = n
            .problems()
            .iter()
            .map(|e| e.key().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "network.certificate_days",
                "network.enroll_listen",
                "network.server_names",
                "network.workstations.Reception",
                "network.workstations.Reception.methods",
                "network.workstations.Reception.methods",
                "network.workstations.Reception.cps",
            ],
            "{:?}",
            n.problems()
        );
    }

    #[test]
    fn workstation_names_are_plain() {
        assert!(workstation_name_problem("reception").is_ok());
        assert!(workstation_name_problem("doctor-1.desk_2").is_ok());
        for bad in ["", "Reception", "a b", "-x", ".x", "é", &"a".repeat(65)] {
            assert!(workstation_name_problem(bad).is_err(), "{bad:?}");
        }
    }
}
