//! The history store's task: open and load at start, then write each
//! recorded change (in batches, on the blocking pool) and apply the
//! retention every [`PRUNE_EVERY`]. Failures are reported, never fatal.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use super::store::{Opened, Store, StoreError};
use crate::context::Context;
use crate::health::{Batch, Change};

/// How often old changes are deleted (in memory and in the store).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Most changes written in one transaction.
const MAX_BATCH: usize = 1024;

/// How the history store is doing, for `/api/status` (`history.store`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum StoreStatus {
    /// No `history.path`: history is kept in memory only.
    #[default]
    Memory,
    /// The store works.
    Ok {
        /// The file.
        path: PathBuf,
        /// A damaged file found at start and moved here (history before
        /// it was lost), if one was.
        moved_aside: Option<PathBuf>,
    },
    /// The store failed; history is kept in memory only, syncing goes on.
    Failed {
        /// The file.
        path: PathBuf,
        /// The last error, in one line.
        error: String,
    },
}

fn failed(ctx: &Context, path: PathBuf, err: &StoreError) {
    ctx.metrics.error("history_store");
    let was_failing = matches!(ctx.health.store_status(), StoreStatus::Failed { .. });
    if was_failing {
        tracing::debug!(error = %err, "history store failed again");
    } else {
        tracing::error!(error = %err, "history store failed; syncing goes on, history is kept in memory only");
    }
    ctx.health.set_store_status(StoreStatus::Failed {
        path,
        error: err.to_string(),
    });
}

/// Opens the store of `history.path` (if set), loads its changes into the
/// context's history and applies the retention. `None` when there is no
/// path or the store cannot be used (reported).
pub async fn open(ctx: &Context) -> Option<Store> {
    let path = ctx.settings.history.path.clone()?;
    let retention = ctx.settings.history.retention;
    let p = path.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let mut opened = Store::open_or_recover(&p)?;
        let cutoff = cutoff(retention);
        opened.store.prune(cutoff, None)?;
        let loaded = opened.store.load()?;
        Ok::<_, StoreError>((opened, loaded, cutoff))
    })
    .await;
    match opened {
        Ok(Ok((Opened { store, moved_aside }, (changes, bad), cutoff))) => {
            if let Some((aside, reason)) = &moved_aside {
                ctx.metrics.error("history_store");
                tracing::error!(path = %path.display(), moved_to = %aside.display(), %reason,
                    "the history file was damaged: moved aside, a new one was started (the history in it is lost)");
            }
            if bad > 0 {
                tracing::warn!(path = %path.display(), rows = bad, "history rows that cannot be read were skipped");
            }
            tracing::info!(path = %path.display(), changes = changes.len(), "history loaded");
            ctx.health.restore(changes);
            ctx.health.prune(cutoff);
            ctx.health.set_store_status(StoreStatus::Ok {
                path,
                moved_aside: moved_aside.map(|(p, _)| p),
            });
            Some(store)
        }
        Ok(Err(e)) => {
            failed(ctx, path, &e);
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "opening the history store panicked");
            ctx.health.set_store_status(StoreStatus::Failed {
                path,
                error: "opening the store panicked".into(),
            });
            None
        }
    }
}

fn cutoff(retention: Duration) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    time::Duration::try_from(retention)
        .ok()
        .and_then(|r| now.checked_sub(r))
        .unwrap_or(now)
}

/// Writes every change `recorded` receives into `store` (if any) until
/// `shutdown`; changes still queued then are written before returning.
pub async fn run(
    ctx: Arc<Context>,
    mut store: Option<Store>,
    mut recorded: broadcast::Receiver<Batch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let retention = ctx.settings.history.retention;
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    prune.tick().await; // The first tick is now; `open` just pruned.
    loop {
        let mut batch: Vec<Change> = Vec::new();
        let mut stop = false;
        tokio::select! {
            r = recorded.recv() => match r {
                Ok(recs) => batch.extend(recs.iter().map(|r| r.change.clone())),
                Err(RecvError::Lagged(lost)) => {
                    ctx.metrics.error("history_lagged");
                    tracing::warn!(lost, "the history store fell behind; some batches of changes were not stored");
                }
                Err(RecvError::Closed) => stop = true,
            },
            _ = prune.tick() => {
                let cut = cutoff(retention);
                ctx.health.prune(cut);
                // The TARTs headscale lists now (none known before a poll).
                let known: Option<HashSet<String>> = ctx.read_state(|s| {
                    s.desired.as_ref().map(|d| d.entries.iter().map(|e| e.name.clone()).collect())
                });
                if let Some(known) = &known {
                    ctx.health.forget(cut, |n| known.contains(n));
                }
                store = with_store(&ctx, store, move |s| {
                    let keep = known.map(|k| move |n: &str| k.contains(n));
                    s.prune(cut, keep.as_ref().map(|k| k as &dyn Fn(&str) -> bool)).map(|_| ())
                })
                .await;
            }
            _ = shutdown.changed() => stop = true,
        }
        // Everything queued now goes in the same transaction.
        while batch.len() < MAX_BATCH {
            match recorded.try_recv() {
                Ok(recs) => batch.extend(recs.iter().map(|r| r.change.clone())),
                Err(TryRecvError::Lagged(lost)) => {
                    ctx.metrics.error("history_lagged");
                    tracing::warn!(
                        lost,
                        "the history store fell behind; some batches of changes were not stored"
                    );
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            store = with_store(&ctx, store, move |s| s.write(&batch)).await;
        }
        if stop && recorded.is_empty() {
            return;
        }
    }
}

/// Runs `f` on the store on the blocking pool; reports failure and
/// recovery. The store is kept after a failure (the next write may work).
async fn with_store(
    ctx: &Context,
    store: Option<Store>,
    f: impl FnOnce(&mut Store) -> Result<(), StoreError> + Send + 'static,
) -> Option<Store> {
    let mut store = store?;
    let path = store.path().to_owned();
    let done = tokio::task::spawn_blocking(move || {
        let result = f(&mut store);
        (store, result)
    })
    .await;
    match done {
        Ok((store, Ok(()))) => {
            if matches!(ctx.health.store_status(), StoreStatus::Failed { .. }) {
                tracing::info!(path = %path.display(), "history store works again");
                ctx.health.set_store_status(StoreStatus::Ok {
                    path,
                    moved_aside: None,
                });
            }
            Some(store)
        }
        Ok((store, Err(e))) => {
            failed(ctx, path, &e);
            Some(store)
        }
        Err(_) => {
            ctx.metrics.error("history_store");
            tracing::error!(path = %path.display(), "the history store panicked; history is kept in memory only");
            ctx.health.set_store_status(StoreStatus::Failed {
                path,
                error: "the store panicked".into(),
            });
            None
        }
    }
}
