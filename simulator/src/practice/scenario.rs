//! What each simulated practice bills, decided by the cards fsed sees, and the `fse.create`
//! requests it sends (with their idempotency keys).

use chrono::{Days, Utc};
use rand::Rng;
use serde_json::{json, Value};

use super::Keys;

/// What a practice bills, decided by its CPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Generalist,
    Specialist,
    Nurse,
    Physiotherapist,
    Remplacant,
}

#[derive(Clone, Debug)]
pub(super) struct Practice {
    cps_serial: String,
    kind: Kind,
}

/// The patients of the Vitale card inserted (none: every sheet in degraded mode).
#[derive(Clone, Debug, Default)]
pub(super) struct Patients {
    /// Beneficiaries as typed in degraded mode.
    typed: Vec<Value>,
    /// The AMC pays directly in tiers payant.
    amc_tiers_payant: bool,
    /// A Vitale card is present.
    card: bool,
}

pub(super) fn practices(cards: &Value) -> (Vec<Practice>, Vec<(String, bool)>, Patients) {
    let mut out = Vec::new();
    let mut pins = Vec::new();
    let mut patients = Patients::default();
    for c in cards.as_array().into_iter().flatten() {
        if let Some(cps) = c.get("cps") {
            let serial = cps["holder"]["serial"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if cps["holder"]["card_type"] != "CPS" && cps["holder"]["card_type"] != "cps" {
                continue;
            }
            let profession = cps["holder"]["profession"].as_str().unwrap_or_default();
            let specialty = cps["holder"]["specialty"].as_str().unwrap_or_default();
            let remplacant = cps["situations"][0]["mode"] == "remplacant";
            let kind = match (profession, specialty) {
                _ if remplacant => Kind::Remplacant,
                ("10", "01") => Kind::Generalist,
                ("10", _) => Kind::Specialist,
                ("60", _) => Kind::Nurse,
                ("70", _) => Kind::Physiotherapist,
                _ => continue,
            };
            pins.push((serial.clone(), c["pin_verified"] == true));
            out.push(Practice {
                cps_serial: serial,
                kind,
            });
        } else if let Some(v) = c.get("vitale") {
            patients.card = true;
            patients.amc_tiers_payant =
                v["amc"]["direct"] == true && v["amc"]["tiers_payant"] == true;
            let o = &v["organism"];
            let organism = format!(
                "{}{}{}",
                o["regime"].as_str().unwrap_or_default(),
                o["caisse"].as_str().unwrap_or_default(),
                o["centre"].as_str().unwrap_or_default()
            );
            for b in v["beneficiaries"].as_array().into_iter().flatten() {
                patients.typed.push(json!({
                    "nir": b["nir"], "surname": b["surname"], "given_name": b["given_name"],
                    "birth_date": b["birth_date"], "rank": b["rank"], "organism": organism,
                }));
            }
        }
    }
    (out, pins, patients)
}

/// A new idempotency key of kind `keys`.
pub(super) fn new_key(keys: Keys, rng: &mut impl Rng) -> uuid::Uuid {
    match keys {
        Keys::V7 => time_ordered_key(rng),
        Keys::V4 => uuid::Builder::from_random_bytes(rng.gen()).into_uuid(),
    }
}

/// A new idempotency key: a UUIDv7 (RFC 9562), the current millisecond then random bits.
fn time_ordered_key(rng: &mut impl Rng) -> uuid::Uuid {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(ms, &rng.gen()).into_uuid()
}

/// `,"name":value`, a member of the params after the first.
fn member(name: &str, value: &Value) -> String {
    format!(",{}:{value}", Value::from(name))
}

/// The `fse.create` requests of one practice. What does not change from one request to the
/// next (the act and its prescriber, the CPS, the practitioner replaced, each beneficiary's
/// degraded-mode identity, the tiers payant) is written as JSON once, from the `Value`s the
/// requests used to be built of; a request only draws its random parts and puts the pieces
/// together.
///
/// The members come in the order `serde_json` writes a `Value`'s (by name): the params are
/// the bytes of the request as it was built before, with the same draws from the same seed.
pub(super) struct Scenario {
    /// A GP or a remplaçant: degraded mode and tiers payant are drawn.
    doctor: bool,
    /// A Vitale card is present (else every sheet is made in degraded mode).
    card: bool,
    /// Beneficiaries to draw from (none: the index is 0).
    beneficiaries: usize,
    /// Share of doctors' sheets made in degraded mode, in percent.
    degraded_percent: u32,
    /// `{"act":{…}`: the params up to their first member's end.
    act: String,
    /// `,"beneficiary":i` for each beneficiary index.
    beneficiary: Vec<String>,
    /// `,"cps_serial":"…"`.
    cps_serial: String,
    /// `,"degraded":{…}` for each beneficiary index.
    degraded: Vec<String>,
    /// `,"replaced":{…}` for a remplaçant, else empty.
    replaced: String,
    /// `,"tiers_payant":{…}` (or empty) outside degraded mode, by the tiers payant coin.
    tiers_payant: [String; 2],
    /// `,"tiers_payant":{…}` in degraded mode.
    degraded_tiers_payant: String,
}

impl Scenario {
    /// Practice `p`'s requests on patients `pat`. Its prescriptions are dated three days
    /// before today, the day this is made.
    pub(super) fn new(p: &Practice, pat: &Patients, degraded_percent: u32) -> Scenario {
        let today = Utc::now().date_naive();
        let prescribed = today
            .checked_sub_days(Days::new(3))
            .unwrap_or(today)
            .format("%Y%m%d")
            .to_string();
        let prescriber = json!({"national_id": "810000000009", "date": prescribed});
        let act = match p.kind {
            Kind::Generalist | Kind::Remplacant => json!({"code": "G"}),
            Kind::Specialist => json!({"code": "CS", "excess_cents": 2000}),
            Kind::Nurse => json!({"code": "AMI", "prescriber": prescriber}),
            Kind::Physiotherapist => {
                json!({"code": "AMK", "coefficient": 750, "prescriber": prescriber})
            }
        };
        let doctor = matches!(p.kind, Kind::Generalist | Kind::Remplacant);
        let tiers_payant = [false, true].map(|tp| match p.kind {
            Kind::Generalist | Kind::Remplacant => member(
                "tiers_payant",
                &json!({"amo": tp, "amc": tp && pat.amc_tiers_payant}),
            ),
            Kind::Specialist => String::new(),
            Kind::Nurse | Kind::Physiotherapist => member("tiers_payant", &json!({"amo": true})),
        });
        let replaced = if p.kind == Kind::Remplacant {
            member(
                "replaced",
                &json!({"national_id": "810000000009", "surname": "MARTIN",
                        "given_name": "Claire", "billing_number": "75123455"}),
            )
        } else {
            String::new()
        };
        let indices = 0..pat.typed.len().max(1);
        Scenario {
            doctor,
            card: pat.card,
            beneficiaries: pat.typed.len(),
            degraded_percent,
            act: format!("{{\"act\":{act}"),
            beneficiary: indices
                .clone()
                .map(|i| member("beneficiary", &json!(i)))
                .collect(),
            cps_serial: member("cps_serial", &json!(p.cps_serial)),
            degraded: indices
                .map(|i| {
                    let typed = pat.typed.get(i).cloned().unwrap_or(Value::Null);
                    member(
                        "degraded",
                        &json!({"reason": "carte Vitale oubliée", "beneficiary": typed}),
                    )
                })
                .collect(),
            replaced,
            tiers_payant,
            degraded_tiers_payant: member("tiers_payant", &json!({"amo": true})),
        }
    }

    /// One request's params (JSON text) in `out`, with idempotency key `key`: draws the
    /// beneficiary, then (for a doctor with a Vitale card) degraded mode, then (for a doctor)
    /// tiers payant.
    pub(super) fn request(&self, rng: &mut impl Rng, key: &uuid::Uuid, out: &mut Vec<u8>) {
        let beneficiary = if self.beneficiaries == 0 {
            0
        } else {
            rng.gen_range(0..self.beneficiaries)
        };
        let degraded = !self.card || (self.doctor && rng.gen_range(0..100) < self.degraded_percent);
        let tp = self.doctor && rng.gen_bool(0.5);
        out.clear();
        out.extend_from_slice(self.act.as_bytes());
        if !degraded {
            out.extend_from_slice(self.beneficiary[beneficiary].as_bytes());
        }
        out.extend_from_slice(self.cps_serial.as_bytes());
        if degraded {
            out.extend_from_slice(self.degraded[beneficiary].as_bytes());
        }
        out.extend_from_slice(b",\"idempotency_key\":\"");
        out.extend_from_slice(
            key.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .as_bytes(),
        );
        out.push(b'"');
        out.extend_from_slice(self.replaced.as_bytes());
        let tiers_payant = if degraded {
            &self.degraded_tiers_payant
        } else {
            &self.tiers_payant[usize::from(tp)]
        };
        out.extend_from_slice(tiers_payant.as_bytes());
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    #[test]
    fn keys_are_distinct_uuid_v7_in_the_order_they_are_made() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut keys = Vec::new();
        for _ in 0..3 {
            keys.push(time_ordered_key(&mut rng).to_string());
            std::thread::sleep(Duration::from_millis(2));
        }
        for k in &keys {
            let u = uuid::Uuid::parse_str(k).unwrap();
            assert_eq!(u.get_version_num(), 7, "{k}");
        }
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, keys, "made 2 ms apart, they sort as made");
        let random = new_key(Keys::V4, &mut rng);
        assert_eq!(random.get_version_num(), 4, "{random}");
    }

    #[test]
    fn practices_follow_the_cards_fsed_sees() {
        let cards = json!([
            {"cps": {"holder": {"card_type": "CPS", "serial": "A", "profession": "60", "specialty": "00"},
                     "situations": [{"mode": "liberal"}]}, "pin_verified": true},
            {"cps": {"holder": {"card_type": "CPE", "serial": "B", "profession": "10", "specialty": "01"},
                     "situations": [{"mode": "liberal"}]}, "pin_verified": false},
            {"vitale": {"organism": {"regime": "01", "caisse": "751", "centre": "0001"},
                        "amc": {"direct": true, "tiers_payant": true},
                        "beneficiaries": [{"nir": "1", "surname": "S", "given_name": "G", "birth_date": "19800101", "rank": 1}]}}
        ]);
        let (list, pins, patients) = practices(&cards);
        assert_eq!(list.len(), 1, "the staff card bills nothing");
        assert_eq!(list[0].kind, Kind::Nurse);
        assert_eq!(pins, vec![("A".to_string(), true)]);
        assert!(patients.amc_tiers_payant);
        assert_eq!(patients.typed[0]["organism"], "017510001");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let r = params(&Scenario::new(&list[0], &patients, 0), &mut rng, &KEY);
        assert_eq!(r["act"]["code"], "AMI");
        assert_eq!(r["cps_serial"], "A");
        assert!(r.get("degraded").is_none());
    }

    const KEY: uuid::Uuid = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

    /// One request of `s`, parsed.
    fn params(s: &Scenario, rng: &mut impl Rng, key: &uuid::Uuid) -> Value {
        let mut out = Vec::new();
        s.request(rng, key, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    /// The request as it was built before [`Scenario`] (the reference it is checked against).
    fn reference_request(
        p: &Practice,
        pat: &Patients,
        degraded_percent: u32,
        rng: &mut impl Rng,
        key: String,
    ) -> Value {
        let today = Utc::now().date_naive();
        let prescribed = today
            .checked_sub_days(Days::new(3))
            .unwrap_or(today)
            .format("%Y%m%d")
            .to_string();
        let prescriber = json!({"national_id": "810000000009", "date": prescribed});
        let beneficiary = if pat.typed.is_empty() {
            0
        } else {
            rng.gen_range(0..pat.typed.len())
        };
        let doctor = matches!(p.kind, Kind::Generalist | Kind::Remplacant);
        let degraded = !pat.card || (doctor && rng.gen_range(0..100) < degraded_percent);
        let mut r = match p.kind {
            Kind::Generalist | Kind::Remplacant => {
                let tp = rng.gen_bool(0.5);
                json!({"act": {"code": "G"}, "tiers_payant": {"amo": tp, "amc": tp && pat.amc_tiers_payant}})
            }
            Kind::Specialist => json!({"act": {"code": "CS", "excess_cents": 2000}}),
            Kind::Nurse => {
                json!({"act": {"code": "AMI", "prescriber": prescriber}, "tiers_payant": {"amo": true}})
            }
            Kind::Physiotherapist => json!({
                "act": {"code": "AMK", "coefficient": 750, "prescriber": prescriber},
                "tiers_payant": {"amo": true}
            }),
        };
        r["cps_serial"] = json!(p.cps_serial);
        r["idempotency_key"] = json!(key);
        if p.kind == Kind::Remplacant {
            r["replaced"] = json!({"national_id": "810000000009", "surname": "MARTIN",
                                   "given_name": "Claire", "billing_number": "75123455"});
        }
        if degraded {
            r["tiers_payant"] = json!({"amo": true});
            r["degraded"] = json!({"reason": "carte Vitale oubliée",
                                   "beneficiary": pat.typed.get(beneficiary).cloned().unwrap_or(Value::Null)});
        } else {
            r["beneficiary"] = json!(beneficiary);
        }
        r
    }

    #[test]
    fn requests_are_those_built_before_for_every_practice_and_mode() {
        let typed = |n: u32| {
            json!({"nir": format!("18001759900{n}"), "surname": "DUPONT", "given_name": "Zoé",
                   "birth_date": "19800101", "rank": n, "organism": "017510001"})
        };
        let patients = [
            // A card whose AMC pays in tiers payant, three beneficiaries.
            Patients {
                typed: vec![typed(1), typed(2), typed(3)],
                amc_tiers_payant: true,
                card: true,
            },
            // A card without the AMC's tiers payant, one beneficiary.
            Patients {
                typed: vec![typed(1)],
                amc_tiers_payant: false,
                card: true,
            },
            // A card with no beneficiary.
            Patients {
                typed: vec![],
                amc_tiers_payant: false,
                card: true,
            },
            // No card: every sheet in degraded mode, no beneficiary known.
            Patients::default(),
        ];
        let kinds = [
            Kind::Generalist,
            Kind::Specialist,
            Kind::Nurse,
            Kind::Physiotherapist,
            Kind::Remplacant,
        ];
        let (mut degraded, mut secured, mut tp) = (0, 0, 0);
        for kind in kinds {
            // A serial that needs escaping, as well as a plain one.
            for serial in ["8899000001", "A\"\\é"] {
                let p = Practice {
                    cps_serial: serial.into(),
                    kind: kind.clone(),
                };
                for pat in &patients {
                    for percent in [0, 5, 50, 100] {
                        let s = Scenario::new(&p, pat, percent);
                        let mut old = rand::rngs::StdRng::seed_from_u64(u64::from(percent) + 11);
                        let mut new = old.clone();
                        for i in 0..64u128 {
                            let key = uuid::Uuid::from_u128(KEY.as_u128() + i);
                            let want =
                                reference_request(&p, pat, percent, &mut old, key.to_string());
                            let mut out = Vec::new();
                            s.request(&mut new, &key, &mut out);
                            let got: Value = serde_json::from_slice(&out).unwrap();
                            assert_eq!(got, want, "{kind:?} {serial} {pat:?} {percent}%");
                            // Members in the same order: the very bytes sent before.
                            assert_eq!(String::from_utf8(out).unwrap(), want.to_string());
                            assert_eq!(
                                old.clone().gen::<u64>(),
                                new.clone().gen::<u64>(),
                                "the same draws"
                            );
                            if got.get("degraded").is_some() {
                                degraded += 1;
                            } else {
                                secured += 1;
                            }
                            tp += usize::from(got["tiers_payant"]["amc"] == true);
                        }
                    }
                }
            }
        }
        assert!(
            degraded > 0 && secured > 0 && tp > 0,
            "{degraded} {secured} {tp}"
        );
    }
}
