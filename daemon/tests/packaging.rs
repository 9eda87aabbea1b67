//! The Debian package's default configuration, `daemon/debian/fsed.toml` (installed as
//! `/etc/fsed/fsed.toml`): every key of `fsed::config::KEYS` is there once, commented
//! out, under its section; as shipped it is "all defaults"; each "# key = value" line,
//! uncommented, holds the key's default; each "#key = example" line (a key unset by
//! default) holds a value of the key's type. The package itself is checked by
//! `tests/deb-check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use fsed::config::{Config, Sources, KEYS};

/// The shipped file.
fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/fsed.toml")
}

/// A commented key line: (section, key, value, is it the default).
struct Line {
    section: String,
    key: String,
    value: String,
    default: bool,
}

/// The commented `key = value` lines of the file, each with the section it is under.
fn commented_keys(text: &str) -> Vec<Line> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[') {
            section = name.trim_end_matches(']').to_string();
            continue;
        }
        let (rest, default) = if let Some(r) = line.strip_prefix("# ") {
            (r, true)
        } else if let Some(r) = line.strip_prefix('#') {
            (r, false)
        } else {
            continue;
        };
        let Some((key, value)) = rest.split_once(" = ") else {
            continue;
        };
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !key.is_empty() {
            out.push(Line {
                section: section.clone(),
                key: key.to_string(),
                value: value.to_string(),
                default,
            });
        }
    }
    out
}

/// Loads `text` as the configuration file with no environment and no flags.
fn load(dir: &Path, text: &str) -> Result<Config, String> {
    let file = dir.join("fsed.toml");
    std::fs::write(&file, text).unwrap();
    let sources = Sources {
        file,
        required: true,
        env: Vec::new(),
        flags: Vec::new(),
    };
    sources.load().map_err(|e| format!("{:?}", e.0))
}

/// The defaults of `daemon/CONFIG.md` outside systemd (no `$STATE_DIRECTORY`,
/// `$RUNTIME_DIRECTORY`), as JSON.
fn documented_defaults() -> serde_json::Value {
    let cfg = Config {
        state_dir: "/var/lib/fsed".into(),
        socket: "/run/fsed/fsed.sock".into(),
        ..Config::default()
    };
    serde_json::to_value(&cfg).unwrap()
}

#[test]
fn every_key_is_there_once_under_its_section() {
    let text = std::fs::read_to_string(shipped()).unwrap();
    let lines = commented_keys(&text);
    for key in KEYS {
        let (section, leaf) = key.path.rsplit_once('.').unwrap_or(("", key.path));
        let found = lines
            .iter()
            .filter(|l| l.section == section && l.key == leaf)
            .count();
        assert_eq!(found, 1, "{} commented once under [{section}]", key.path);
    }
    // Nothing else: as many key lines as keys.
    assert_eq!(lines.len(), KEYS.len());
}

#[test]
fn as_shipped_it_is_all_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shipped()).unwrap();
    let cfg = load(dir.path(), &text).unwrap();
    let mut expected = serde_json::to_value(Config::default()).unwrap();
    // Config::default() reads systemd's directories from the environment; so does loading.
    expected["state_dir"] = serde_json::to_value(&cfg.state_dir).unwrap();
    expected["socket"] = serde_json::to_value(&cfg.socket).unwrap();
    assert_eq!(serde_json::to_value(&cfg).unwrap(), expected);
}

#[test]
fn uncommented_default_lines_are_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shipped()).unwrap();
    // "# key = value" becomes "key = value"; the example lines stay commented.
    let uncommented: String = text
        .lines()
        .map(|l| {
            let keep = commented_keys(l).first().is_some_and(|k| k.default);
            match l.strip_prefix("# ") {
                Some(rest) if keep => rest.to_string(),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let defaults = commented_keys(&text).iter().filter(|l| l.default).count();
    // 55 keys (30 with transport.amqp_urls, the 4 sharing and session bounds of [cards], the 6
    // of [network], the 2 of [remote], the 4 of [paper], the 2 of [app], the 2 of
    // [attachments], the 5 of [rights]), of which 8 have no default value (trust_dir,
    // lots.close_at, api.allowed_users, api.allowed_groups, network.listen,
    // network.enroll_listen, remote.identity_dir, paper.dir): 55 - 8 = 47 lines hold a default.
    assert_eq!(defaults, 47);
    let cfg = load(dir.path(), &uncommented).unwrap();
    assert_eq!(serde_json::to_value(&cfg).unwrap(), documented_defaults());
}

#[test]
fn example_lines_hold_a_value_of_their_key() {
    let text = std::fs::read_to_string(shipped()).unwrap();
    let examples: Vec<Line> = commented_keys(&text)
        .into_iter()
        .filter(|l| !l.default)
        .collect();
    let names: Vec<String> = examples
        .iter()
        .map(|l| format!("{}.{}", l.section, l.key))
        .collect();
    assert_eq!(
        names,
        [
            ".trust_dir",
            "lots.close_at",
            "api.allowed_users",
            "api.allowed_groups",
            "network.listen",
            "network.enroll_listen",
            "remote.identity_dir",
            "paper.dir"
        ]
    );
    for line in &examples {
        let body = if line.section.is_empty() {
            format!("{} = {}\n", line.key, line.value)
        } else {
            format!("[{}]\n{} = {}\n", line.section, line.key, line.value)
        };
        // The type only: the users and groups named need not exist on this machine.
        let table: toml::Table = body.parse().unwrap();
        let cfg: Result<Config, _> = toml::Value::Table(table).try_into();
        assert!(cfg.is_ok(), "{body}: {:?}", cfg.err());
        // And unset by default: the shipped file, as is, leaves them unset.
        let defaults = documented_defaults();
        let value = if line.section.is_empty() {
            &defaults[&line.key]
        } else {
            &defaults[&line.section][&line.key]
        };
        assert!(
            value.is_null(),
            "{}.{} is unset by default",
            line.section,
            line.key
        );
    }
}
