//! Starting the real `matcher` and `tg-gateway` binaries, capturing their logs, and
//! stopping them (SIGTERM for a graceful stop, SIGKILL for a crash).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Where `cargo build --workspace --bins` put the binaries: next to this test executable
/// (`<target>/debug/deps/..` -> `<target>/debug`), else `$CARGO_TARGET_DIR/debug` or
/// `<repo>/target/debug`. `LOOKALIKE_BIN_DIR` overrides.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("LOOKALIKE_BIN_DIR") {
        return PathBuf::from(d);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(debug) = exe.parent().and_then(Path::parent) {
            candidates.push(debug.to_path_buf());
        }
    }
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug"));
    }
    candidates.push(repo_root().join("target/debug"));
    candidates
        .iter()
        .find(|d| d.join("tg-gateway").exists() && d.join("matcher").exists())
        .or_else(|| candidates.first())
        .cloned()
        .unwrap_or_default()
}

pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!("{} not found: run `cargo build --workspace --bins` before the e2e tests", p.display());
    }
    Ok(p)
}

pub use crate::ports::free_port;

/// Captured stdout + stderr lines.
#[derive(Clone, Default, Debug)]
pub struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }

    fn push(&self, line: String) {
        if let Ok(mut l) = self.0.lock() {
            l.push(line);
        }
    }
}

/// A child process whose output is collected into `logs` (and echoed, prefixed, to the
/// test's stderr, which cargo shows for failed tests).
pub struct Process {
    pub name: String,
    child: Child,
    pub logs: Logs,
}

impl Process {
    pub fn spawn(name: &str, mut cmd: Command, logs: Logs) -> anyhow::Result<Self> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let echo = std::env::var_os("E2E_ECHO_LOGS").is_some();
        if let Some(out) = child.stdout.take() {
            pump(name, BufReader::new(out), logs.clone(), echo);
        }
        if let Some(err) = child.stderr.take() {
            pump(name, BufReader::new(err), logs.clone(), echo);
        }
        Ok(Self { name: name.to_owned(), child, logs })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill").args([sig, &pid.to_string()]).status();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit (SIGKILL after that).
    pub async fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal("-TERM");
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        }
    }

    /// SIGKILL: a crash, no clean-up.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs.contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.try_exit() {
                bail!("{} exited ({status}) before logging {needle:?}:\n{}", self.name, self.logs.text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} did not log {needle:?} within {timeout:?}:\n{}", self.name, self.logs.text())
    }
}

fn pump<R>(name: &str, reader: BufReader<R>, logs: Logs, echo: bool)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut lines = reader.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("[{name}] {line}");
            }
            logs.push(line);
        }
    });
}
