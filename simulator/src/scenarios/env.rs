//! A scenario's own world: fsed on its embedded virtual reader (Unix socket slots), the card
//! simulator as a child process, the insurer in a thread on the spool, in a folder of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::insurer_loop::InsurerLoop;
use super::model::Scenario;

/// Where the runner finds its programs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `fsed`.
    pub fsed: PathBuf,
    /// `fse-sim` (this program).
    pub sim: PathBuf,
}

/// Why a world did not start.
#[derive(Debug)]
pub enum StartError {
    /// The scenario cannot run here (the reason).
    Skip(String),
    /// A failure.
    Fail(String),
}

/// A started world; everything stops and its folder goes when dropped.
pub struct World {
    /// Its folder.
    pub dir: PathBuf,
    /// fsed's socket.
    pub socket: PathBuf,
    fsed: Option<Child>,
    cards: Option<Child>,
    cards_args: Vec<String>,
    /// The insurer, when the scenario has one.
    pub insurer: Option<InsurerLoop>,
    tmpfs: bool,
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        kill(&mut self.cards);
        kill(&mut self.fsed);
        self.insurer = None;
        if self.tmpfs {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `f` holds, checking every 20 ms, at most `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl World {
    /// Starts fsed, the cards and the insurer for `s` in a new folder under `base`.
    pub fn start(s: &Scenario, tools: &Tools, base: &Path, n: usize) -> Result<World, StartError> {
        let dir = base.join(format!("{}-{n}", s.id));
        let fail = |e: String| StartError::Fail(e);
        std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let mut world = World {
            socket: dir.join("fsed.sock"),
            dir: dir.clone(),
            fsed: None,
            cards: None,
            cards_args: Vec::new(),
            insurer: None,
            tmpfs: false,
        };
        if s.fsed.tmpfs_mb > 0 {
            world.mount_tmpfs(s.fsed.tmpfs_mb)?;
        }
        let trust = dir.join("trust");
        crate::pki::run(&crate::pki::PkiArgs { out: trust.clone() })
            .map_err(|e| fail(format!("test PKI: {e}")))?;
        world.start_fsed(s, tools, &trust)?;
        if !s.insurer.absent {
            world.insurer =
                Some(InsurerLoop::start(&s.insurer, &dir.join("spool"), &trust).map_err(fail)?);
        }
        world.cards_args = cards_args(s, &dir);
        world.start_cards(tools)?;
        Ok(world)
    }

    fn mount_tmpfs(&mut self, mb: u32) -> Result<(), StartError> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {
                self.tmpfs = true;
                Ok(())
            }
            _ => Err(StartError::Skip(
                "mount -t tmpfs refused (it needs root and mount rights)".into(),
            )),
        }
    }

    fn start_fsed(&mut self, s: &Scenario, tools: &Tools, trust: &Path) -> Result<(), StartError> {
        let config = self.dir.join("fsed.toml");
        std::fs::write(&config, &s.fsed.config)
            .map_err(|e| StartError::Fail(format!("{}: {e}", config.display())))?;
        let log = std::fs::File::create(self.dir.join("fsed.log"))
            .map_err(|e| StartError::Fail(format!("fsed.log: {e}")))?;
        let mut cmd = Command::new(&tools.fsed);
        cmd.arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&self.dir)
            .arg("--socket")
            .arg(&self.socket)
            .args(["--cards", "virtual", "--trust-dir"])
            .arg(trust);
        if !s.fsed.config.contains("[transport]") {
            cmd.args(["--transport", "spool"]);
        }
        for i in 0..2 {
            cmd.arg("--virtual-slot").arg(format!(
                "{}{}",
                fse_formats::vpcd::UNIX_PREFIX,
                self.slot(i).display()
            ));
        }
        let err = log
            .try_clone()
            .map_err(|e| StartError::Fail(e.to_string()))?;
        let child = cmd
            .stdout(log)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| StartError::Fail(format!("{}: {e}", tools.fsed.display())))?;
        self.fsed = Some(child);
        let sock = self.socket.clone();
        if !wait_until(Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        }) {
            return Err(StartError::Fail(format!(
                "fsed did not open its socket within 30 s: {}",
                self.log_tail()
            )));
        }
        Ok(())
    }

    /// The Unix socket of virtual slot `i`.
    pub fn slot(&self, i: usize) -> PathBuf {
        self.dir.join(format!("slot{i}.vpcd"))
    }

    /// The card simulator's control socket.
    pub fn control(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Starts the card simulator (again).
    pub fn start_cards(&mut self, tools: &Tools) -> Result<(), StartError> {
        let _ = std::fs::remove_file(self.control());
        let child = Command::new(&tools.sim)
            .args(&self.cards_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StartError::Fail(format!("{}: {e}", tools.sim.display())))?;
        self.cards = Some(child);
        let control = self.control();
        if !wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&control).is_ok()
        }) {
            return Err(StartError::Fail("the card simulator did not start".into()));
        }
        Ok(())
    }

    /// Stops the card simulator: its slots go away.
    pub fn stop_cards(&mut self) {
        kill(&mut self.cards);
    }

    /// The last lines of fsed's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("fsed.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

fn cards_args(s: &Scenario, dir: &Path) -> Vec<String> {
    let d = |p: &str| dir.join(p).display().to_string();
    vec![
        "cards".into(),
        "--control".into(),
        d("control.sock"),
        "--latency-ms".into(),
        "0".into(),
        "--signature-latency-ms".into(),
        s.cards.signature_latency_ms.to_string(),
        "--cps-socket".into(),
        d("slot0.vpcd"),
        "--vitale-socket".into(),
        d("slot1.vpcd"),
        "--cps-profile".into(),
        s.cards.cps.clone(),
        "--vitale-profile".into(),
        s.cards.vitale.clone(),
    ]
}
