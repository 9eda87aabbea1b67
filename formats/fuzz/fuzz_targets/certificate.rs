//! Certificate checks against arbitrary bytes: a card certificate, CA
//! certificates and CRLs from the fuzzer, loaded and checked: no panic.
#![no_main]

use fse_formats::pki::TrustStore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Three parts separated by 0xFE bytes: CA certificates, CRLs, the card certificate.
    let mut parts = data.split(|b| *b == 0xFE);
    let (cas, crls, leaf) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or(data),
    );
    let mut store = TrustStore::new();
    let _ = store.add_certificates(cas);
    let _ = store.add_crls(crls);
    let key: [u8; 32] = leaf.get(..32).and_then(|k| k.try_into().ok()).unwrap_or([0; 32]);
    let _ = store.check(leaf, &key, 1_795_000_000);
    let _ = store.check(data, &key, 0);
});
