//! The history of each TART's state changes (tailnet and service): kept in
//! memory, bounded ([`Log`], read through [`crate::health::Health`]), and
//! persisted in a small embedded store ([`Store`], `[history] path`) so the
//! 24-hour bars survive a restart.
//!
//! - [`log`](Log): the in-memory history and the bars' segments.
//! - [`Store`]: the redb file.
//! - [`task`]: opens and loads the store at start, then writes every
//!   recorded change and applies the retention, off the loop. A damaged or
//!   unwritable store is reported (log, `/api/status`'s `history`, metric
//!   `tart_sync_errors_total{kind="history_store"}`) and never stops
//!   syncing or probing: history is then kept in memory only.
//! - [`record_tailnet`]: the loop's hook after each poll.
//!
//! Known limit: while tart-sync is stopped nothing is observed; after a
//! restart the bars show each TART's last recorded state across the gap,
//! and the first poll and probe record what changed meanwhile.

mod log;
mod store;
mod tailnet;
pub mod task;

pub use log::{Log, Summary, MAX_CHANGES_PER_TART};
pub use store::{Opened, Store, StoreError};
pub use tailnet::record_tailnet;
pub use task::StoreStatus;
