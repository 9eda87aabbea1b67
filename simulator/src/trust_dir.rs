//! The trust directory of the built-in card profiles (`fse-sim pki --out DIR`): the trust
//! store fsed reads, the certificate of every built-in card and of every insurer the cards
//! name, and the revocation lists of the cards marked revoked or opposed. It joins the test
//! PKI and the card profiles, which know nothing of each other's files.

use std::path::Path;

use time::OffsetDateTime;

use crate::pki::{pem_block, PkiError, TestPki, CA_FILE, CRL_FILE, INSURERS_DIR, ROOT_FILE};
use crate::profile_keys::{app_key, app_serial};
use crate::profiles::{self, test_key, Profile};

impl TestPki {
    /// Writes the trust store (`root.pem`, `ca.pem` with the insurer CA, `crl.pem`), under
    /// `cards/` the certificate of every built-in card profile, and under `insurers/` the
    /// certificate of every insurer those profiles name (AMO organism codes, AMC numbers), PEM. The CRLs list the built-in profiles marked
    /// `revoked` (CPS) or `opposed` (Vitale). Returns the number of card certificates written.
    pub fn write(&self, dir: &Path, now: OffsetDateTime) -> Result<usize, PkiError> {
        let cards = dir.join("cards");
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|source| PkiError::Write {
                path: path.display().to_string(),
                source,
            })
        };
        std::fs::create_dir_all(&cards).map_err(|source| PkiError::Write {
            path: cards.display().to_string(),
            source,
        })?;
        let (mut revoked, mut opposed, mut n) = (Vec::new(), Vec::new(), 0);
        let mut insurers = std::collections::BTreeSet::new();
        for (name, _) in profiles::BUILTIN {
            let cert = match Profile::load(name)? {
                Profile::Cps(c) => {
                    if c.revoked {
                        revoked.push(c.serial.clone());
                    }
                    let (holder, _) = c.holder();
                    self.cps_certificate(&holder, &test_key(&c.serial).verifying_key().to_bytes())?
                }
                Profile::Vitale(v) => {
                    self.write_apps(dir, &v.serial, v.beneficiaries.len())?;
                    if v.opposed {
                        opposed.push(v.serial.clone());
                    }
                    let data = v.data();
                    insurers.insert(data.organism.code());
                    if let Some(amc) = &data.amc {
                        insurers.insert(amc.number.clone());
                    }
                    self.vitale_certificate(
                        &v.serial,
                        &test_key(&v.serial).verifying_key().to_bytes(),
                    )?
                }
                Profile::Unknown(_) => continue,
            };
            let pem = pem_block("CERTIFICATE", &cert);
            write(&cards.join(format!("{name}.pem")), &pem)?;
            n += 1;
        }
        let insurers_dir = dir.join(INSURERS_DIR);
        std::fs::create_dir_all(&insurers_dir).map_err(|source| PkiError::Write {
            path: insurers_dir.display().to_string(),
            source,
        })?;
        for code in &insurers {
            let pem = pem_block("CERTIFICATE", &self.insurer_certificate(code)?);
            write(&insurers_dir.join(format!("{code}.pem")), &pem)?;
        }
        write(&dir.join(ROOT_FILE), &self.root_pem())?;
        write(&dir.join(CA_FILE), &self.ca_pem())?;
        write(&dir.join(CRL_FILE), &self.crl_pem(&revoked, &opposed, now)?)?;
        Ok(n)
    }
}

impl TestPki {
    /// Writes under `apps/` the certificate of the Vitale app of each of the `beneficiaries`
    /// of the card `card_serial` (`APP-<card>-<index>.pem`).
    fn write_apps(
        &self,
        dir: &Path,
        card_serial: &str,
        beneficiaries: usize,
    ) -> Result<(), PkiError> {
        let apps = dir.join("apps");
        std::fs::create_dir_all(&apps).map_err(|source| PkiError::Write {
            path: apps.display().to_string(),
            source,
        })?;
        for index in 0..beneficiaries {
            let serial = app_serial(card_serial, index);
            let cert =
                self.app_certificate(&serial, &app_key(&serial).verifying_key().to_bytes())?;
            let path = apps.join(format!("{serial}.pem"));
            std::fs::write(&path, pem_block("CERTIFICATE", &cert)).map_err(|source| {
                PkiError::Write {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::pki::{run, PkiArgs, CA_FILE, CRL_FILE, INSURERS_DIR, ROOT_FILE};
    use crate::profiles;

    #[test]
    fn pki_writes_the_trust_store_and_every_card_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let n = run(&PkiArgs {
            out: dir.path().to_path_buf(),
        })
        .unwrap();
        let cards = profiles::BUILTIN
            .iter()
            .filter(|(n, _)| !n.starts_with("unknown"))
            .count();
        assert_eq!(n, cards);
        for f in [ROOT_FILE, CA_FILE, CRL_FILE] {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{f}");
        }
        // The default Vitale card's organism (01 751 0001) and the AMC of the tiers-payant
        // profile (75500017) each have a certificate.
        for code in ["017510001", "75500017"] {
            let path = dir.path().join(INSURERS_DIR).join(format!("{code}.pem"));
            assert!(path.exists(), "{}", path.display());
        }
        // The default card's two beneficiaries each have their Vitale app's certificate.
        let card = match profiles::Profile::load(profiles::DEFAULT_VITALE).unwrap() {
            profiles::Profile::Vitale(v) => v.serial,
            _ => unreachable!(),
        };
        for i in 0..2 {
            let path = dir.path().join("apps").join(format!("APP-{card}-{i}.pem"));
            assert!(path.exists(), "{}", path.display());
        }
    }
}
