//! The real `tart-sync` binary as a child process, configured through its
//! environment, with its CPU time and memory read from `/proc` and its
//! counters from its status server's `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{err, Res};

/// A running `tart-sync run`; killed (SIGKILL) if still running when dropped.
pub struct Daemon {
    child: tokio::process::Child,
    /// Its process id.
    pub pid: u32,
    /// Its status server.
    pub status: SocketAddr,
    /// Its log (stderr).
    pub log: PathBuf,
    http: reqwest::Client,
}

/// The counters the benchmark reads from `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// `tart_sync_cycles_total`.
    pub cycles: u64,
    /// `tart_sync_caddy_writes_total`.
    pub writes: u64,
    /// `tart_sync_headscale_poll_duration_seconds_count`.
    pub polls: u64,
    /// `tart_sync_cycle_duration_seconds_sum`.
    pub cycle_seconds: f64,
    /// `tart_sync_headscale_poll_duration_seconds_sum`.
    pub poll_seconds: f64,
}

impl Daemon {
    /// Starts `bin run` with exactly these `TART_SYNC_*` variables (plus PATH and RUST_LOG).
    pub fn spawn(bin: &Path, env: &BTreeMap<String, String>, log: PathBuf) -> Res<Daemon> {
        let status: SocketAddr = env
            .get("TART_SYNC_STATUS_LISTEN")
            .ok_or_else(|| err("TART_SYNC_STATUS_LISTEN is not set"))?
            .parse()?;
        let log_file = std::fs::File::create(&log)?;
        let mut cmd =
            tokio::process::Command::from(e2e::tart_sync_run_command(bin, env, "info", log_file));
        cmd.kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", bin.display())))?;
        let pid = child.id().ok_or_else(|| err("tart-sync exited at once"))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Daemon {
            child,
            pid,
            status,
            log,
            http,
        })
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the log when the process has exited.
    pub fn check_running(&mut self) -> Res<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(err(format!(
                "tart-sync exited ({status}); log:\n{}",
                self.log_text()
            ))),
        }
    }

    /// Reads `/metrics`. `Ok(None)` when the status server does not answer (yet) or
    /// has no `tart_sync_cycles_total`.
    pub async fn counters(&self) -> Res<Option<Counters>> {
        let r = match self
            .http
            .get(format!("http://{}/metrics", self.status))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r,
            _ => return Ok(None),
        };
        let text = r.text().await?;
        Ok(parse_metrics(&text))
    }

    /// Waits (at most `limit`) until `/metrics` satisfies `pred`, reading it every 20 ms.
    pub async fn wait_counters(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Counters) -> bool,
    ) -> Res<Counters> {
        self.wait_counters_every(limit, Duration::from_millis(20), pred)
            .await
    }

    /// [`Daemon::wait_counters`], reading `/metrics` every `period` (a
    /// measurement window reads it rarely, so it measures tart-sync's cycles,
    /// not its status server).
    pub async fn wait_counters_every(
        &mut self,
        limit: Duration,
        period: Duration,
        pred: impl Fn(&Counters) -> bool,
    ) -> Res<Counters> {
        let deadline = Instant::now() + limit;
        loop {
            self.check_running()?;
            if let Some(c) = self.counters().await? {
                if pred(&c) {
                    return Ok(c);
                }
            }
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "tart-sync's /metrics did not reach the expected state within {limit:?}; last: {:?}; log:\n{}",
                    self.counters().await.ok().flatten(),
                    tail(&self.log_text(), 40)
                )));
            }
            tokio::time::sleep(period).await;
        }
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Picks the benchmark's counters out of a Prometheus text exposition.
pub fn parse_metrics(text: &str) -> Option<Counters> {
    let mut c = Counters::default();
    let mut seen = false;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        match name.trim() {
            "tart_sync_cycles_total" => {
                c.cycles = v as u64;
                seen = true;
            }
            "tart_sync_caddy_writes_total" => c.writes = v as u64,
            "tart_sync_headscale_poll_duration_seconds_count" => c.polls = v as u64,
            "tart_sync_cycle_duration_seconds_sum" => c.cycle_seconds = v,
            "tart_sync_headscale_poll_duration_seconds_sum" => c.poll_seconds = v,
            _ => {}
        }
    }
    seen.then_some(c)
}

/// Clock ticks per second for `/proc/<pid>/stat`.
pub use e2e::procfs::{clock_ticks, reset_peak_rss};

/// utime + stime of a process (all threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Res<u64> {
    e2e::procfs::cpu_ticks(pid).ok_or_else(|| err(format!("cannot read /proc/{pid}/stat")))
}

/// A `/proc/<pid>/status` field in kB (`VmHWM`, `VmRSS`).
pub fn status_kb(pid: u32, key: &str) -> Res<u64> {
    e2e::procfs::status_kb(pid, key).ok_or_else(|| err(format!("no {key} in /proc/{pid}/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metrics() {
        let t = "# HELP tart_sync_cycles_total x\n# TYPE tart_sync_cycles_total counter\ntart_sync_cycles_total 7\n\
tart_sync_caddy_writes_total 2\ntart_sync_headscale_poll_duration_seconds_count 9\ntart_sync_cycle_duration_seconds_sum 0.25\n\
tart_sync_errors_total{kind=\"x\"} 1\n";
        let c = parse_metrics(t).unwrap_or_default();
        assert_eq!((c.cycles, c.writes, c.polls), (7, 2, 9));
        assert!((c.cycle_seconds - 0.25).abs() < 1e-12);
        assert!(parse_metrics("nothing 1\n").is_none());
    }
}
