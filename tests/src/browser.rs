//! Headless Chromium for page tests: a DOM dump or a screenshot of a URL,
//! the browser killed after a time limit.
//!
//! The binary is `CHROMIUM_BIN` (default `/usr/bin/chromium`); without it
//! [`chromium_bin`] says SKIP, except under `CI=true`, where it panics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium, or `None` (SKIP) when it is not installed outside CI.
pub fn chromium_bin() -> Option<PathBuf> {
    let p = std::env::var("CHROMIUM_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if Path::new(&p).exists() {
        return Some(PathBuf::from(p));
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "Chromium is not installed at {p} (set CHROMIUM_BIN); under CI=true that is a failure"
        );
    }
    eprintln!("SKIP: no Chromium at {p} (set CHROMIUM_BIN)");
    None
}

/// One headless Chromium with its own profile directory.
pub struct Browser {
    bin: PathBuf,
    profile: crate::TempDir,
}

impl Browser {
    /// The browser at `bin`, with a fresh profile.
    pub fn new(bin: PathBuf) -> Browser {
        Browser {
            bin,
            profile: crate::temp_dir("chromium-profile"),
        }
    }

    /// Runs Chromium on `url` with `args`; its stdout, and how long it ran.
    /// Panics (with its stderr) when it fails or runs longer than 90 s.
    pub fn run(&self, args: &[String], url: &str) -> (String, Duration) {
        let out = self.profile.path().join("stdout");
        let err = self.profile.path().join("stderr");
        let mut child = Command::new(&self.bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Chromium {}: {e}", self.bin.display()));
        let started = Instant::now();
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "Chromium did not finish within 90 s; its stderr:\n{}",
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = started.elapsed();
        assert!(
            status.success(),
            "Chromium failed ({status}); its stderr:\n{}",
            fs::read_to_string(&err).unwrap_or_default()
        );
        (fs::read_to_string(&out).unwrap_or_default(), took)
    }

    /// The DOM after the page loaded (and its scripts ran), and how long Chromium took.
    pub fn dump_dom(&self, url: &str) -> (String, Duration) {
        self.run(&["--dump-dom".into()], url)
    }

    /// A `width`×`height` screenshot of `url` into `png`.
    pub fn screenshot(&self, url: &str, png: &Path, width: u32, height: u32) {
        let _ = fs::remove_file(png);
        self.run(
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size={width},{height}"),
            ],
            url,
        );
        let bytes =
            fs::read(png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
        assert!(
            bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "not a PNG: {}",
            png.display()
        );
    }
}
