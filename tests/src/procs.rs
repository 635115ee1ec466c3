//! Processes the chaos suite starts, kills, stops and restarts: `taskhost
//! serve` nodes, and a SecantusDB server of its own (so that stopping the
//! database disturbs no other test).

use crate::server::SECRET;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (free when asked; used soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Sends `signal` (e.g. "STOP", "CONT", "KILL") to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
}

/// A `taskhost serve` node with a fixed id and port, restartable.
pub struct NodeProc {
    pub id: String,
    pub port: u16,
    store: String,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl NodeProc {
    pub fn new(id: &str, store: &str, dir: &Path, extra: &[&str]) -> NodeProc {
        NodeProc {
            id: id.to_owned(),
            port: free_port(),
            store: store.to_owned(),
            dir: dir.join(id),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        }
    }

    /// Uses `dir` as the data folder (several nodes may share one, e.g. to
    /// share compiled plugins).
    pub fn share_data_dir(&mut self, dir: &Path) {
        self.dir = dir.to_owned();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the node and waits until it listens; tries again for up to
    /// `within` (e.g. while the database is coming back).
    pub fn start(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            match self.try_start() {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("chaos: {} did not start ({e}); again", self.id);
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_start(&self) -> Result<Child, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new(crate::taskhost_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--store", &self.store, "--jwt-secret", SECRET])
            .args(["--node-id", &self.id, "--data-dir"])
            .arg(&self.dir)
            .args(&self.extra)
            .env_remove("TASKHOST_STORE")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.contains("listening") {
            Ok(child)
        } else {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "exited before listening; see {}",
                self.dir.display()
            ))
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A SecantusDB server of the chaos run's own, on its own port and folder.
pub struct Database {
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Database {
    /// Starts SecantusDB from the venv that `scripts/mongo-test-server.sh`
    /// makes (`SECANTUS_VENV`, default `.secv` in the repository).
    pub fn start(dir: &Path) -> Result<Database, String> {
        let port = free_port();
        let mut db = Database {
            url: format!(
                "mongodb://127.0.0.1:{port}/chaos?directConnection=true&journal=true&serverSelectionTimeoutMS=5000"
            ),
            port,
            dir: dir.join("secantus"),
            child: None,
        };
        db.restart()?;
        Ok(db)
    }

    fn server() -> PathBuf {
        std::env::var_os("SECANTUS_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::repo_root().join(".secv"))
            .join("bin/secantusd-py")
    }

    /// Starts the server (again) on the same port and data, and waits until
    /// it accepts connections.
    pub fn restart(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(Self::server())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir.join("data"))
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", Self::server().display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err("SecantusDB did not come up in 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGKILL (acknowledged writes survive: the URL asks for the journal).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.kill();
    }
}
