//! The tasks beside the control loop (issue #12): the history store's
//! writer, the prober and the notifier, started and stopped together. None
//! of them can hold up the loop: they share no lock with it beyond short
//! reads of the state, and they are fed through bounded queues.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::context::Context;

/// The running tasks.
#[derive(Debug)]
pub struct Sidecar {
    history: JoinHandle<()>,
    prober: Option<JoinHandle<()>>,
    notifier: Option<JoinHandle<()>>,
}

/// Opens and loads the history store (before anything records a change),
/// then starts the history writer, the prober (`probe.enabled`) and the
/// notifier (`notify.webhook_url`); they stop when `shutdown` turns true.
pub async fn start(ctx: &Arc<Context>, shutdown: &watch::Receiver<bool>) -> Sidecar {
    let recorded = ctx.health.subscribe();
    let store = crate::history::task::open(ctx).await;
    let history = tokio::spawn(crate::history::task::run(
        ctx.clone(),
        store,
        recorded,
        shutdown.clone(),
    ));
    let notifier = ctx.settings.notify.webhook_url.clone().map(|url| {
        let recorded = ctx.health.subscribe();
        tokio::spawn(crate::notify::run(
            ctx.clone(),
            url,
            recorded,
            shutdown.clone(),
        ))
    });
    let prober = ctx
        .settings
        .probe
        .enabled
        .then(|| tokio::spawn(crate::probe::run(ctx.clone(), shutdown.clone())));
    Sidecar {
        history,
        prober,
        notifier,
    }
}

impl Sidecar {
    /// Waits (at most `limit`) for the tasks to stop after shutdown; the
    /// history writer stores what is still queued first.
    pub async fn finish(self, limit: Duration) {
        let all = async {
            let _ = self.history.await;
            for task in [self.prober, self.notifier].into_iter().flatten() {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("the history, probe or webhook task did not stop in time");
        }
    }
}
