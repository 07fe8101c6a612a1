//! The status server cannot stop syncing: the real `tart-sync run` binary,
//! started with a limit of 1,024 open files (soft and hard, like systemd's
//! default soft limit, but so that raising it to the hard limit does not
//! help), against real Caddy (latest). While 100 slow-header connections
//! ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", then nothing) and 1,100 idle
//! connections are open to its status port, Caddy restarts (tart-sync needs
//! new sockets to reach it) and a new node comes online: both must reach
//! Caddy within two poll intervals (plus a margin); the connections over the
//! status server's cap must be closed at once, and the slow ones after the
//! header-read timeout.
//!
//! Against the binary before the fix (axum::serve: no header timeout, no
//! connection cap) this test fails: the slow connections stay open.
//!
//! Unix only (`sh -c 'ulimit -n 1024; exec …'`). Needs `target/debug/tart-sync`
//! and `CADDY_BIN_LATEST` (else SKIP, outside CI).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::sync::Rig;
use e2e::Version;
use tart_sync::status::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const SLOW: usize = 100;
const IDLE: usize = 1_100;
const POLL: Duration = Duration::from_secs(1);
/// Open files the daemon may have (soft and hard).
const DAEMON_FILES: u32 = 1_024;

/// The daemon, killed on drop.
struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps `stream` open, reading, until the server closes it (or `limit`
/// passes after `opened`); how long after `opened` it was closed.
fn watch_close(
    mut stream: TcpStream,
    opened: Instant,
    limit: Duration,
) -> JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        let until_closed = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return opened.elapsed(),
                    Ok(_) => {}
                }
            }
        };
        let left = limit.saturating_sub(opened.elapsed());
        tokio::time::timeout(left, until_closed).await.ok()
        // The stream is dropped (closed) here in every case.
    })
}

async fn collect(tasks: Vec<JoinHandle<Option<Duration>>>) -> Vec<Option<Duration>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_goes_on_while_the_status_port_is_flooded() {
    // This process holds 1,200 client sockets and the rig's.
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        files >= 4_096,
        "this test needs 4,096 open files, the hard limit is {files}"
    );

    let Some(mut rig) = Rig::start(Version::Latest, &["alpha", "beta"]).await else {
        return;
    };
    let nodes = rig.nodes();
    rig.hs.set_nodes(&nodes[..1]).await;
    let env = rig.env(&[("TART_SYNC_HEADSCALE_POLL_INTERVAL", "1s")]);
    let status = env["TART_SYNC_STATUS_LISTEN"].clone();
    let dir = e2e::temp_dir("status-flood");
    let log = dir.path().join("tart-sync.log");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {DAEMON_FILES} && exec \"$0\" run"))
        .arg(e2e::tart_sync_bin())
        .env_clear()
        .envs(&env)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let daemon = Daemon { child, log };
    assert!(
        rig.wait_for("/alpha/", "alpha", Duration::from_secs(15))
            .await,
        "alpha never appeared; log:\n{}",
        daemon.log()
    );

    // The flood: slow-header connections first (so they are all let in),
    // then idle ones, of which those over the cap must be closed at once.
    let limit = HEADER_READ_TIMEOUT + Duration::from_secs(3);
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(&status).await.unwrap();
        let opened = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        slow.push(watch_close(s, opened, limit));
    }
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let s = TcpStream::connect(&status).await.unwrap();
        idle.push(watch_close(s, Instant::now(), limit));
    }

    // Let the daemon take in what it will take in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // While they are held: Caddy restarts (so tart-sync must open new
    // connections to it, and reinstall its routes) and beta comes online;
    // both must reach Caddy within two poll intervals (plus a margin for
    // Caddy's reload).
    rig.caddy.restart();
    let changed = Instant::now();
    rig.hs.set_nodes(&nodes).await;
    let reached = rig
        .wait_for("/beta/", "beta", 2 * POLL + Duration::from_millis(1500))
        .await;
    let took = changed.elapsed();
    assert!(
        reached,
        "the change did not reach Caddy within {took:?} while the status port was flooded; log:\n{}",
        daemon.log()
    );
    assert_eq!(
        rig.who("/alpha/").await,
        "alpha",
        "alpha's route was not reinstalled"
    );

    let slow = collect(slow).await;
    let idle = collect(idle).await;
    // Every slow-header connection was closed by the server, after the
    // header timeout (not before: they were let in).
    for (i, closed) in slow.iter().enumerate() {
        let closed =
            closed.unwrap_or_else(|| panic!("slow connection {i} still open after {limit:?}"));
        assert!(
            closed >= HEADER_READ_TIMEOUT - Duration::from_millis(500),
            "slow connection {i} closed after {closed:?}, before the header timeout"
        );
    }
    // Idle connections over the cap were closed at once; the others after
    // the header timeout.
    let over_cap = IDLE - (MAX_CONNECTIONS - SLOW);
    let at_once = idle
        .iter()
        .filter(|c| c.is_some_and(|d| d < Duration::from_secs(2)))
        .count();
    assert!(
        at_once >= over_cap,
        "only {at_once} idle connections were closed at once; at least {over_cap} are over the cap of {MAX_CONNECTIONS}"
    );
    let open = idle.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open, 0,
        "{open} idle connections still open after {limit:?}"
    );

    // The status server answers again, and the daemon logged no sync failure.
    let page = reqwest::get(format!("http://{status}/api/status"))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let log = daemon.log();
    assert!(!log.contains("cannot reach Caddy"), "{log}");
    eprintln!(
        "flood: change reached Caddy after {took:?}; {at_once} of {IDLE} idle connections closed at once"
    );
}
