//! The load generator: `wrk -t2 -c32 -d<secs>s --latency`, or a small
//! built-in closed-loop client with the same shape (32 keep-alive
//! connections, reqwest) when wrk is not installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::report::percentile;
use crate::{err, Res};

/// Threads and connections, as in the reference measurements.
pub const THREADS: u32 = 2;
/// Keep-alive connections.
pub const CONNECTIONS: u32 = 32;

/// One load run.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadResult {
    /// Completed requests per second.
    pub rps: f64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
    /// Completed requests.
    pub requests: u64,
    /// Responses with a status outside 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

/// Which generator runs the load.
#[derive(Debug, Clone)]
pub enum Generator {
    /// wrk at this path.
    Wrk(PathBuf),
    /// The built-in client.
    Builtin,
}

impl Generator {
    /// `wrk` from `WRK_BIN` or the PATH, else the built-in client.
    pub fn detect() -> Generator {
        if let Ok(p) = std::env::var("WRK_BIN") {
            if !p.is_empty() && std::path::Path::new(&p).exists() {
                return Generator::Wrk(PathBuf::from(p));
            }
        }
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = std::path::Path::new(dir).join("wrk");
            if p.is_file() {
                return Generator::Wrk(p);
            }
        }
        Generator::Builtin
    }

    /// For the output.
    pub fn describe(&self) -> String {
        match self {
            Generator::Wrk(p) => {
                format!("`wrk -t{THREADS} -c{CONNECTIONS} -d<secs>s --latency` ({})", p.display())
            }
            Generator::Builtin => format!(
                "built-in closed-loop client ({CONNECTIONS} keep-alive connections; wrk is not installed)"
            ),
        }
    }

    /// Loads `http://<addr><path>` with `Host: <host>` for `secs` seconds.
    pub async fn run(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        secs: u64,
    ) -> Res<LoadResult> {
        match self {
            Generator::Wrk(bin) => run_wrk(bin, addr, host, path, secs, None).await,
            Generator::Builtin => run_builtin(addr, host, &[path.to_string()], secs).await,
        }
    }

    /// Loads `http://<addr>` with `Host: <host>` for `secs` seconds, each
    /// request on the next of `paths` (round-robin; each wrk thread and each
    /// built-in connection walks the list from its own starting point).
    pub async fn run_cycle(
        &self,
        addr: SocketAddr,
        host: &str,
        paths: &[String],
        secs: u64,
    ) -> Res<LoadResult> {
        let first = paths
            .first()
            .ok_or_else(|| err("no paths to cycle through"))?;
        match self {
            Generator::Wrk(bin) => {
                let dir = e2e::temp_dir("bench-wrk");
                let script = dir.path().join("cycle.lua");
                std::fs::write(&script, cycle_script(paths))?;
                run_wrk(bin, addr, host, first, secs, Some(&script)).await
            }
            Generator::Builtin => run_builtin(addr, host, paths, secs).await,
        }
    }
}

/// A wrk script that sends each request to the next path of `paths`; each
/// thread starts at another place in the list.
pub fn cycle_script(paths: &[String]) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "-- tart-bench: round-robin over {} paths\n\
local paths = {{{}}}\n\
local counter = 0\n\
local i = 0\n\
function setup(thread)\n  thread:set(\"offset\", counter)\n  counter = counter + 1\nend\n\
function init(args)\n  i = (offset or 0) * 7919\nend\n\
function request()\n  i = i + 1\n  return wrk.format(nil, paths[(i % #paths) + 1])\nend\n",
        paths.len(),
        list.join(", ")
    )
}

async fn run_wrk(
    bin: &PathBuf,
    addr: SocketAddr,
    host: &str,
    path: &str,
    secs: u64,
    script: Option<&std::path::Path>,
) -> Res<LoadResult> {
    let url = format!("http://{addr}{path}");
    let mut cmd = tokio::process::Command::new(bin);
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    cmd.args([
        format!("-t{THREADS}"),
        format!("-c{CONNECTIONS}"),
        format!("-d{secs}s"),
        "--latency".into(),
        "--timeout".into(),
        "5s".into(),
        "-H".into(),
        format!("Host: {host}"),
        url.clone(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot run {}: {e}", bin.display())))?;
    let out = tokio::time::timeout(Duration::from_secs(secs + 20), child.wait_with_output())
        .await
        .map_err(|_| {
            err(format!(
                "wrk on {url} did not finish within {} s",
                secs + 20
            ))
        })??;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(err(format!(
            "wrk on {url} failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    parse_wrk(&text).map_err(|e| {
        err(format!(
            "cannot parse wrk's output for {url} ({e}):\n{text}"
        ))
    })
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.00s`, `1.00m`) in milliseconds.
fn wrk_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        "h" => v * 3_600_000.0,
        _ => return None,
    })
}

/// Parses wrk's `--latency` report.
pub fn parse_wrk(text: &str) -> Result<LoadResult, String> {
    let mut r = LoadResult::default();
    let (mut got_rps, mut got_p50, mut got_p99) = (false, false, false);
    for line in text.lines() {
        let t = line.trim();
        let mut words = t.split_whitespace();
        match words.next() {
            Some("Requests/sec:") => {
                r.rps = words
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("bad Requests/sec")?;
                got_rps = true;
            }
            Some("50%") => {
                r.p50_ms = words.next().and_then(wrk_ms).ok_or("bad 50%")?;
                got_p50 = true;
            }
            Some("99%") => {
                r.p99_ms = words.next().and_then(wrk_ms).ok_or("bad 99%")?;
                got_p99 = true;
            }
            Some("Non-2xx") => {
                r.non_2xx = t
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("bad Non-2xx")?;
            }
            Some("Socket") => {
                // Socket errors: connect 0, read 0, write 0, timeout 0
                r.socket_errors = t
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum();
            }
            Some(n) if t.contains(" requests in ") => {
                r.requests = n.parse().map_err(|_| "bad request count")?;
            }
            _ => {}
        }
    }
    if got_rps && got_p50 && got_p99 {
        Ok(r)
    } else {
        Err("no Requests/sec or latency distribution".into())
    }
}

/// The built-in client: `CONNECTIONS` tasks sharing a keep-alive pool of as
/// many connections, each sending GETs back to back (reading every body),
/// each walking `paths` round-robin from its own starting point.
async fn run_builtin(addr: SocketAddr, host: &str, paths: &[String], secs: u64) -> Res<LoadResult> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(CONNECTIONS as usize)
        .timeout(Duration::from_secs(5))
        .build()?;
    let urls: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(paths.iter().map(|p| format!("http://{addr}{p}")).collect());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..CONNECTIONS as usize {
        let (http, urls, host) = (http.clone(), urls.clone(), host.to_string());
        tasks.spawn(async move {
            let (mut lat, mut non_2xx, mut errors) = (Vec::new(), 0, 0);
            let mut next = task.wrapping_mul(7919);
            while Instant::now() < deadline {
                next = next.wrapping_add(1);
                let url = &urls[next % urls.len().max(1)];
                let t = Instant::now();
                let status = match http.get(url).header("host", &host).send().await {
                    Ok(r) => {
                        let status = r.status();
                        r.bytes().await.ok().map(|_| status)
                    }
                    Err(_) => None,
                };
                match status {
                    Some(s) => {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        if !(s.is_success() || s.is_redirection()) {
                            non_2xx += 1;
                        }
                    }
                    None => errors += 1,
                }
            }
            (lat, non_2xx, errors)
        });
    }
    let mut lat: Vec<f64> = Vec::new();
    let mut r = LoadResult::default();
    while let Some(res) = tasks.join_next().await {
        let (l, non_2xx, errors) = res?;
        lat.extend(l);
        r.non_2xx += non_2xx;
        r.socket_errors += errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    r.requests = lat.len() as u64;
    r.rps = lat.len() as f64 / elapsed;
    lat.sort_by(f64::total_cmp);
    r.p50_ms = percentile(&lat, 50.0).unwrap_or(f64::NAN);
    r.p99_ms = percentile(&lat, 99.0).unwrap_or(f64::NAN);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 5s test @ http://127.0.0.1:8080/tart-00001/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.41ms    2.10ms  31.99ms   80.00%
    Req/Sec     3.70k   312.21     4.31k    72.00%
  Latency Distribution
     50%    3.98ms
     75%    5.20ms
     90%    6.92ms
     99%   12.03ms
  36808 requests in 5.00s, 7.90MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   7358.85
Transfer/sec:      1.58MB
";

    #[test]
    fn parses_wrk() {
        let r = parse_wrk(SAMPLE).unwrap_or_default();
        assert_eq!(r.requests, 36808);
        assert!((r.rps - 7358.85).abs() < 1e-6);
        assert!((r.p50_ms - 3.98).abs() < 1e-9);
        assert!((r.p99_ms - 12.03).abs() < 1e-9);
        assert_eq!(r.non_2xx, 4);
        assert_eq!(r.socket_errors, 3);
    }

    #[test]
    fn the_cycle_script_walks_every_path() {
        let script = cycle_script(&["/a/".to_string(), "/b-2/".to_string()]);
        assert!(
            script.contains(r#"local paths = {"/a/", "/b-2/"}"#),
            "{script}"
        );
        assert!(script.contains("function request()"));
        assert!(script.contains("paths[(i % #paths) + 1]"));
    }

    #[test]
    fn wrk_units() {
        assert_eq!(wrk_ms("812.00us"), Some(0.812));
        assert_eq!(wrk_ms("1.50s"), Some(1500.0));
        assert_eq!(wrk_ms("x"), None);
    }
}
