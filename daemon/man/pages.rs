//! The manual pages of `fsed` (section 8) and `fsectl` (section 1), made from their clap
//! definitions with `clap_mangen`: one page for the command and one for each of its
//! subcommands (`fsectl-cards-verify-pin.1`), as `git` has. The pages are kept in this
//! folder for the Debian package (`cargo deb` packs them as they are); each binary's unit
//! test renders them again and fails when a file differs, or writes them all when
//! `FSED_WRITE_MAN_PAGES=1` is set:
//!
//! ```sh
//! FSED_WRITE_MAN_PAGES=1 cargo test -p fsed -p fsectl --bins man_pages
//! ```
//!
//! Included by the binaries' tests (`#[path]`), so it is no module of the library.

use std::path::{Path, PathBuf};

/// Every page of `cmd` and its visible subcommands: (file name, roff text).
pub fn render(cmd: clap::Command, section: &str) -> Vec<(String, String)> {
    fn walk(cmd: clap::Command, section: &str, out: &mut Vec<(String, String)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, section, out);
        }
        // Every page's footer names the package and its version (a subcommand has none).
        let man = clap_mangen::Man::new(cmd)
            .section(section)
            .source(format!("fsed {}", env!("CARGO_PKG_VERSION")))
            .manual("fsed");
        let mut text = Vec::new();
        // Writing into a Vec cannot fail.
        man.render(&mut text).expect("render into memory");
        let text = String::from_utf8(text).expect("roff from UTF-8 help text");
        out.push((man.get_filename(), text));
    }
    // As clap_mangen::generate_to: subcommands get their parents' names ("fsectl cards
    // verify-pin", page "fsectl-cards-verify-pin"), and no page for `help`.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, section, &mut out);
    out.sort();
    out
}

/// This folder: `man` in `daemon/` (the package fsed), or beside the including package's
/// folder when it is one of `daemon/` (`daemon/fsectl/`).
pub fn folder() -> PathBuf {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let own = package.join("man");
    if own.join("pages.rs").is_file() {
        own
    } else {
        package.join("../man")
    }
}

/// Compares the pages with the files of this folder whose names start with `prefix` and
/// end with `.section`: the stale, missing and extra files' names. With
/// `FSED_WRITE_MAN_PAGES=1`, writes the pages and removes the extra files first.
pub fn check(pages: &[(String, String)], prefix: &str, section: &str) -> Vec<String> {
    let dir = folder();
    let ours = |name: &str| {
        name.ends_with(&format!(".{section}"))
            && (name == format!("{prefix}.{section}") || name.starts_with(&format!("{prefix}-")))
    };
    let on_disk = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("read daemon/man")
            .map(|e| {
                e.expect("entry of daemon/man")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| ours(n))
            .collect();
        names.sort();
        names
    };
    if std::env::var_os("FSED_WRITE_MAN_PAGES").is_some() {
        for name in on_disk() {
            std::fs::remove_file(dir.join(name)).expect("remove an old page");
        }
        for (name, text) in pages {
            std::fs::write(dir.join(name), text).expect("write a page");
        }
    }
    let mut problems = Vec::new();
    for (name, text) in pages {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(old) if old == *text => {}
            Ok(_) => problems.push(format!("{name} differs")),
            Err(_) => problems.push(format!("{name} is missing")),
        }
    }
    for name in on_disk() {
        if !pages.iter().any(|(n, _)| *n == name) {
            problems.push(format!("{name} is no page of the command"));
        }
    }
    problems
}
