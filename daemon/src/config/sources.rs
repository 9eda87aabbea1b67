//! Where the configuration comes from: the TOML file, the environment, the command line
//! and the defaults, merged in that order of precedence, and the errors that name the key at
//! fault and where its value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::keys::{env_var, find_key, Key, Kind, ENV_ALIASES, KEYS};
use super::Config;

/// One problem with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not TOML (the message has the line and column).
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong, where.
        message: String,
    },
    /// A key that does not exist, or a value of the wrong type.
    #[error("{key}: {reason} (from {origin})")]
    Key {
        /// Key at fault, as a dotted path (`lots.max_sheets`).
        key: String,
        /// Where the value came from: the file, an environment variable or a flag.
        origin: String,
        /// Why.
        reason: String,
    },
    /// A value is out of range.
    #[error("{key}: {reason}")]
    Invalid {
        /// Key at fault.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// The key at fault, when the problem is one key's.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Parse { .. } => None,
        }
    }
}

/// Every problem found in a configuration (never empty), one a line when shown.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Where the configuration comes from: read once at start and again on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The TOML file.
    pub file: PathBuf,
    /// Whether a missing file is an error (it was named on the command line).
    pub required: bool,
    /// The environment variables (name, value); only the `FSED_` ones are read.
    pub env: Vec<(String, String)>,
    /// Values given as flags: (key, flag, value).
    pub flags: Vec<(&'static str, &'static str, toml::Value)>,
}

/// Where a value came from, for messages.
fn origin_of(origins: &BTreeMap<String, String>, path: &str) -> String {
    origins
        .get(path)
        .cloned()
        .unwrap_or_else(|| "the defaults".into())
}

/// Sets the leaf `path` (dotted) of `table`, making its sections as needed.
fn set_leaf(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_string(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_leaf(t, rest, value);
            }
        }
    }
}

/// Every leaf of `table` as (dotted path, value); arrays are leaves.
pub(super) fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !t.is_empty() => leaves(t, &path, out),
            other => out.push((path, other.clone())),
        }
    }
}

/// An environment variable's text as the value of `key`.
fn env_value(key: &Key, text: &str) -> Result<toml::Value, String> {
    Ok(match key.kind {
        Kind::Text => toml::Value::String(text.to_string()),
        Kind::Number => toml::Value::Integer(
            text.trim()
                .parse::<i64>()
                .map_err(|_| format!("{text:?} is not a whole number"))?,
        ),
        Kind::Bool => toml::Value::Boolean(match text.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(format!("{text:?} is not true or false")),
        }),
        Kind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
    })
}

impl Sources {
    /// The file at `file` (required when named on the command line) and this process's
    /// environment; no flags yet.
    pub fn new(file: PathBuf, required: bool) -> Sources {
        Sources {
            file,
            required,
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("FSED_"))
                .collect(),
            flags: Vec::new(),
        }
    }

    /// Adds a flag's value for `key` (it wins over the file and the environment).
    pub fn flag(&mut self, key: &'static str, flag: &'static str, value: toml::Value) {
        self.flags.push((key, flag, value));
    }

    /// Reads and merges every source, then checks the values: the configuration, or every
    /// problem found, each naming its key (and where its value came from).
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        let file = self.file.display().to_string();
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.required => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: self.file.clone(),
                    source,
                }
                .into())
            }
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: self.file.clone(),
                    message: e.to_string().trim_end().to_string(),
                })?;
        let mut origins = BTreeMap::new();
        let mut from_file = Vec::new();
        leaves(&table, "", &mut from_file);
        for (path, _) in from_file {
            origins.insert(path, file.clone());
        }
        let mut errors = Vec::new();
        let env: BTreeMap<&str, &str> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let by_env = ENV_ALIASES
            .iter()
            .map(|(var, path)| (var.to_string(), *path))
            .chain(KEYS.iter().map(|k| (env_var(k.path), k.path)));
        for (var, path) in by_env {
            let (Some(text), Some(key)) = (env.get(var.as_str()), find_key(path)) else {
                continue;
            };
            match env_value(key, text) {
                Ok(v) => {
                    set_leaf(&mut table, path, v);
                    origins.insert(path.to_string(), var.clone());
                }
                Err(reason) => errors.push(ConfigError::Key {
                    key: path.to_string(),
                    origin: var.clone(),
                    reason,
                }),
            }
        }
        for (path, flag, value) in &self.flags {
            set_leaf(&mut table, path, value.clone());
            origins.insert(path.to_string(), flag.to_string());
        }
        let cfg = match toml::Value::Table(table.clone()).try_into::<Config>() {
            Ok(cfg) => {
                errors.extend(cfg.problems());
                Some(cfg)
            }
            Err(whole) => {
                // Each value alone over the defaults: every bad key is named, not only the
                // first; the values that pass are then checked together.
                let mut all = Vec::new();
                leaves(&table, "", &mut all);
                let before = errors.len();
                let mut good = toml::Table::new();
                for (path, value) in all {
                    let mut one = toml::Table::new();
                    set_leaf(&mut one, &path, value.clone());
                    match toml::Value::Table(one).try_into::<Config>() {
                        Ok(_) => set_leaf(&mut good, &path, value),
                        Err(e) => errors.push(ConfigError::Key {
                            origin: origin_of(&origins, &path),
                            key: path,
                            reason: e.message().to_string(),
                        }),
                    }
                }
                match toml::Value::Table(good).try_into::<Config>() {
                    Ok(rest) => errors.extend(rest.problems()),
                    Err(_) if errors.len() > before => {}
                    Err(_) => errors.push(ConfigError::Parse {
                        path: self.file.clone(),
                        message: whole.message().to_string(),
                    }),
                }
                None
            }
        };
        match cfg {
            Some(cfg) if errors.is_empty() => Ok(cfg),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

impl Config {
    /// Reads a TOML file (absent file: defaults, when `required` is false), with this
    /// process's `FSED_` environment variables over it, and checks it.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigErrors> {
        Sources::new(path.to_path_buf(), required).load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fsed.toml");
        std::fs::write(&p, "[lots]\nmax_sheet = 3\n").unwrap();
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("max_sheet"), "{err}");
    }

    fn sources(text: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fsed.toml");
        std::fs::write(&file, text).unwrap();
        let s = Sources {
            file,
            required: true,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: Vec::new(),
        };
        (dir, s)
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let (_d, s) = sources(
            "log_level = \"loud[\"\n[lots]\nmax_sheet = 3\nmax_age_secs = \"ten\"\n\
             [transport]\nwindow = 0\n[retention]\ndays = 10\n[nope]\nx = 1\n",
            &[("FSED_LOTS_DEADLINE_ALARM_DAYS", "soon")],
        );
        let errors = s.load().unwrap_err();
        let text = errors.to_string();
        for key in [
            "lots.max_sheet:",
            "lots.max_age_secs:",
            "nope.x:",
            "log_level:",
            "transport.window:",
            "retention.days:",
            "lots.deadline_alarm_days: \"soon\" is not a whole number (from FSED_LOTS_DEADLINE_ALARM_DAYS)",
        ] {
            assert!(text.lines().any(|l| l.starts_with(key)), "{key} in:\n{text}");
        }
        assert_eq!(text.lines().count(), 7, "{text}");
        let (_d, s) = sources(
            "log_level = \"loud[\"\n[transport]\nwindow = 0\n[retention]\ndays = 10\n",
            &[],
        );
        let text = s.load().unwrap_err().to_string();
        for key in ["log_level:", "transport.window:", "retention.days:"] {
            assert!(
                text.lines().any(|l| l.starts_with(key)),
                "{key} in:\n{text}"
            );
        }
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn a_broker_url_that_does_not_parse_is_named_without_its_password() {
        let (_d, s) = sources(
            "[transport]\nkind = \"amqp\"\namqp_url = \"amqp://u:secret@host:notaport/%2f\"\n",
            &[],
        );
        let text = s.load().unwrap_err().to_string();
        assert!(text.starts_with("transport.amqp_url:"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn several_brokers_come_from_the_env_comma_separated_and_stay_hidden() {
        let (_d, s) = sources(
            "[transport]\nkind = \"amqp\"\n",
            &[(
                "FSED_TRANSPORT_AMQP_URLS",
                "amqp://u:pw1@127.0.0.1:1/%2f, amqp://u:pw2@127.0.0.1:2/%2f,amqp://127.0.0.1:3/%2f",
            )],
        );
        let cfg = s.load().unwrap();
        assert_eq!(
            cfg.transport.broker_urls(),
            [
                "amqp://u:pw1@127.0.0.1:1/%2f",
                "amqp://u:pw2@127.0.0.1:2/%2f",
                "amqp://127.0.0.1:3/%2f"
            ]
        );
        assert!(!format!("{:?}", cfg.transport).contains("pw"));
        // The second address does not parse: named by its rank, without any password.
        let (_d, s) = sources(
            "[transport]\nkind = \"amqp\"\namqp_urls = [\"amqp://u:pw1@h:1/%2f\", \"amqp://u:pw2@h:nope/%2f\"]\n",
            &[],
        );
        let text = s.load().unwrap_err().to_string();
        assert!(
            text.starts_with("transport.amqp_urls: address 2: not a broker URL"),
            "{text}"
        );
        assert!(!text.contains("pw"), "{text}");
    }

    #[test]
    fn flags_win_over_env_which_wins_over_the_file() {
        let (_d, mut s) = sources(
            "[lots]\nmax_sheets = 7\nmax_age_secs = 70\ndeadline_alarm_days = 3\n",
            &[
                ("FSED_LOTS_MAX_AGE_SECS", "80"),
                ("FSED_LOTS_MAX_SHEETS", "8"),
                ("FSED_AMQP_URL", "amqp://old"),
                ("FSED_TRANSPORT_AMQP_URL", "amqp://new"),
                ("FSED_CARDS_VIRTUAL_SLOTS", "127.0.0.1:1, 127.0.0.1:2"),
                ("FSED_LOG", "debug"),
            ],
        );
        s.flag(
            "lots.max_sheets",
            "--lot-max-sheets",
            toml::Value::Integer(9),
        );
        let cfg = s.load().unwrap();
        assert_eq!(cfg.lots.max_sheets, 9, "flag over env");
        assert_eq!(cfg.lots.max_age_secs, 80, "env over file");
        assert_eq!(cfg.lots.deadline_alarm_days, 3, "file over default");
        assert_eq!(cfg.lots.close_at, None, "default");
        assert_eq!(
            cfg.transport.amqp_url, "amqp://new",
            "the key's own variable wins"
        );
        assert_eq!(cfg.cards.virtual_slots.len(), 2);
        assert_eq!(cfg.log_level, "debug");
        s.flag(
            "lots.max_sheets",
            "--lot-max-sheets",
            toml::Value::Integer(0),
        );
        let text = s.load().unwrap_err().to_string();
        assert!(
            text.starts_with("lots.max_sheets: must be between 1 and"),
            "{text}"
        );
    }
}
