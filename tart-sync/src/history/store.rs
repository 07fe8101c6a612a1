//! The history's file: one redb table of state changes, keyed by time.
//!
//! redb is a pure-Rust embedded key-value store (no C library to build,
//! one file, crash-safe commits). A row is one [`Change`]: the key is
//! `(unix time in nanoseconds, sequence number)`, the value one byte for
//! the kind and state followed by the TART's name.
//!
//! A file that is not a redb file or is damaged is moved aside to
//! `<path>.corrupt-<unix time>` and a new one is started
//! ([`Store::open_or_recover`]); the history in it is lost, syncing is not
//! affected.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, ReadableTable, StorageError, TableDefinition};
use time::OffsetDateTime;

use crate::desired::NodeState;
use crate::health::{Change, ChangeKind, ServiceState};

/// The table of changes: `(unix ns, sequence) → kind byte + name`.
const CHANGES: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("changes");

/// What went wrong with the history file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or created.
    #[error("cannot open the history file {path}: {source}; history is kept in memory only until it can (check the path, its directory and permissions)")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<redb::Error>,
    },
    /// The file is damaged or not a history file, and could not be moved aside.
    #[error("the history file {path} is damaged ({reason}) and cannot be moved aside: {source}; history is kept in memory only (remove the file)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What redb found.
        reason: String,
        /// Why moving it failed.
        #[source]
        source: std::io::Error,
    },
    /// A read, write or commit failed.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<redb::Error>,
    },
}

/// The open history file.
pub struct Store {
    db: Database,
    path: PathBuf,
    next_seq: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// How [`Store::open_or_recover`] went.
#[derive(Debug)]
pub struct Opened {
    /// The store.
    pub store: Store,
    /// Where a damaged file was moved, if one was.
    pub moved_aside: Option<(PathBuf, String)>,
}

fn is_damage(e: &DatabaseError) -> Option<String> {
    match e {
        DatabaseError::Storage(StorageError::Corrupted(what)) => Some(what.clone()),
        DatabaseError::UpgradeRequired(v) => Some(format!("file format {v}")),
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            Some(io.to_string())
        }
        _ => None,
    }
}

impl Store {
    /// Opens (or creates) the file at `path` and checks its table; a
    /// damaged file is moved aside and a new one started.
    pub fn open_or_recover(path: &Path) -> Result<Opened, StoreError> {
        let open_err = |source: Box<redb::Error>| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        match Store::open(path) {
            Ok(store) => Ok(Opened {
                store,
                moved_aside: None,
            }),
            Err(OpenFailure::Damaged(reason)) => {
                let stamp = OffsetDateTime::now_utc().unix_timestamp();
                let mut aside = path.as_os_str().to_owned();
                aside.push(format!(".corrupt-{stamp}"));
                let aside = PathBuf::from(aside);
                std::fs::rename(path, &aside).map_err(|source| StoreError::Corrupt {
                    path: path.to_owned(),
                    reason: reason.clone(),
                    source,
                })?;
                match Store::open(path) {
                    Ok(store) => Ok(Opened {
                        store,
                        moved_aside: Some((aside, reason)),
                    }),
                    Err(OpenFailure::Damaged(reason)) => {
                        Err(open_err(Box::new(redb::Error::Corrupted(reason))))
                    }
                    Err(OpenFailure::Other(e)) => Err(open_err(e)),
                }
            }
            Err(OpenFailure::Other(e)) => Err(open_err(e)),
        }
    }

    fn open(path: &Path) -> Result<Store, OpenFailure> {
        let db = Database::create(path).map_err(|e| match is_damage(&e) {
            Some(reason) => OpenFailure::Damaged(reason),
            None => OpenFailure::Other(boxed(e)),
        })?;
        let mut store = Store {
            db,
            path: path.to_owned(),
            next_seq: 0,
        };
        // Creates the table, and reads the last key: a damaged table shows here.
        let last = store.last_seq().map_err(|e| match *e {
            redb::Error::Corrupted(reason) => OpenFailure::Damaged(reason),
            other => OpenFailure::Other(Box::new(other)),
        })?;
        store.next_seq = last.map_or(0, |s| s.wrapping_add(1));
        Ok(store)
    }

    fn last_seq(&self) -> Result<Option<u64>, Box<redb::Error>> {
        let tx = self.db.begin_write().map_err(boxed)?;
        let last = {
            let table = tx.open_table(CHANGES).map_err(boxed)?;
            let mut seq = None;
            // Sequence numbers grow with time: the largest is in the last rows.
            for row in table.iter().map_err(boxed)?.rev().take(64) {
                let (key, _) = row.map_err(boxed)?;
                let s = key.value().1;
                seq = Some(seq.map_or(s, |m: u64| m.max(s)));
            }
            seq
        };
        tx.commit().map_err(boxed)?;
        Ok(last)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: impl Into<redb::Error>) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source: boxed(source),
        }
    }

    /// Appends `changes` in one transaction.
    pub fn write(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.io(e))?;
        let mut seq = self.next_seq;
        {
            let mut table = tx.open_table(CHANGES).map_err(|e| self.io(e))?;
            for change in changes {
                let mut value = Vec::with_capacity(1 + change.name.len());
                value.push(encode_kind(change.kind));
                value.extend_from_slice(change.name.as_bytes());
                let key = (nanos(change.at), seq);
                table
                    .insert(key, value.as_slice())
                    .map_err(|e| self.io(e))?;
                seq = seq.wrapping_add(1);
            }
        }
        tx.commit().map_err(|e| self.io(e))?;
        self.next_seq = seq;
        Ok(())
    }

    /// Every stored change, oldest first; rows that cannot be read back
    /// (an unknown kind, a name that is not UTF-8) are skipped and counted.
    pub fn load(&self) -> Result<(Vec<Change>, usize), StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = tx.open_table(CHANGES).map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        let mut bad = 0usize;
        for row in table.iter().map_err(|e| self.io(e))? {
            let (key, value) = row.map_err(|e| self.io(e))?;
            match decode(key.value().0, value.value()) {
                Some(change) => out.push(change),
                None => bad = bad.saturating_add(1),
            }
        }
        Ok((out, bad))
    }

    /// Deletes changes before `cutoff`, except each TART's newest change of
    /// each kind (its state at `cutoff`); with `keep`, those go too for a
    /// TART that `keep` refuses and that has no change since `cutoff` (it
    /// left the tailnet or the filters). Returns how many rows went.
    pub fn prune(
        &mut self,
        cutoff: OffsetDateTime,
        keep: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<usize, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.io(e))?;
        let mut removed = 0usize;
        {
            let mut table = tx.open_table(CHANGES).map_err(|e| self.io(e))?;
            // The newest old row of each (name, kind of change) is kept.
            let mut newest: HashMap<(Vec<u8>, bool), (i64, u64)> = HashMap::new();
            let mut old = Vec::new();
            let end = (nanos(cutoff), 0u64);
            for row in table.range(..end).map_err(|e| self.io(e))? {
                let (key, value) = row.map_err(|e| self.io(e))?;
                let key = key.value();
                let value = value.value();
                let tailnet = value.first().is_some_and(|k| *k < 10);
                let name = value.get(1..).unwrap_or_default().to_vec();
                if let Some(previous) = newest.insert((name, tailnet), key) {
                    old.push(previous);
                }
            }
            if let Some(keep) = keep {
                let mut recent = std::collections::HashSet::new();
                for row in table.range(end..).map_err(|e| self.io(e))? {
                    let (_, value) = row.map_err(|e| self.io(e))?;
                    recent.insert(value.value().get(1..).unwrap_or_default().to_vec());
                }
                for ((name, _), key) in &newest {
                    let known = std::str::from_utf8(name).is_ok_and(keep);
                    if !known && !recent.contains(name) {
                        old.push(*key);
                    }
                }
            }
            for key in old {
                table.remove(key).map_err(|e| self.io(e))?;
                removed = removed.saturating_add(1);
            }
        }
        tx.commit().map_err(|e| self.io(e))?;
        Ok(removed)
    }
}

enum OpenFailure {
    Damaged(String),
    Other(Box<redb::Error>),
}

fn boxed(e: impl Into<redb::Error>) -> Box<redb::Error> {
    Box::new(e.into())
}

/// Nanoseconds since 1970 (an `i64` lasts until 2262).
fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn encode_kind(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Tailnet(NodeState::Online) => 1,
        ChangeKind::Tailnet(NodeState::Grace) => 2,
        ChangeKind::Tailnet(NodeState::Offline) => 3,
        ChangeKind::Service(ServiceState::Unknown) => 10,
        ChangeKind::Service(ServiceState::Up) => 11,
        ChangeKind::Service(ServiceState::Down) => 12,
    }
}

fn decode(at_nanos: i64, value: &[u8]) -> Option<Change> {
    let (&code, name) = value.split_first()?;
    let kind = match code {
        1 => ChangeKind::Tailnet(NodeState::Online),
        2 => ChangeKind::Tailnet(NodeState::Grace),
        3 => ChangeKind::Tailnet(NodeState::Offline),
        10 => ChangeKind::Service(ServiceState::Unknown),
        11 => ChangeKind::Service(ServiceState::Up),
        12 => ChangeKind::Service(ServiceState::Down),
        _ => return None,
    };
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_nanos)).ok()?;
    Some(Change {
        at,
        name: String::from_utf8(name.to_vec()).ok()?,
        kind,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;

    fn change(name: &str, minute: i64, kind: ChangeKind) -> Change {
        Change {
            at: datetime!(2026-07-10 08:00 UTC) + Duration::minutes(minute),
            name: name.into(),
            kind,
        }
    }

    const UP: ChangeKind = ChangeKind::Service(ServiceState::Up);
    const DOWN: ChangeKind = ChangeKind::Service(ServiceState::Down);
    const ONLINE: ChangeKind = ChangeKind::Tailnet(NodeState::Online);

    #[test]
    fn changes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        let written = vec![
            change("rhodes", 1, ONLINE),
            change("rhodes", 2, UP),
            change("zürich", 2, DOWN),
        ];
        {
            let mut store = Store::open_or_recover(&path).unwrap().store;
            store.write(&written[..2]).unwrap();
            store.write(&written[2..]).unwrap();
        }
        let opened = Store::open_or_recover(&path).unwrap();
        assert!(opened.moved_aside.is_none());
        assert_eq!(opened.store.load().unwrap(), (written, 0));
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_a_new_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        std::fs::write(&path, vec![0x5a; 20_000]).unwrap();
        let opened = Store::open_or_recover(&path).unwrap();
        let (aside, _reason) = opened.moved_aside.unwrap();
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            vec![0x5a; 20_000],
            "kept for inspection"
        );
        let mut store = opened.store;
        assert_eq!(store.load().unwrap(), (vec![], 0));
        store.write(&[change("rhodes", 1, UP)]).unwrap();
        drop(store);
        let store = Store::open_or_recover(&path).unwrap().store;
        assert_eq!(store.load().unwrap().0.len(), 1);
    }

    #[test]
    fn an_unusable_path_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("history.redb");
        let err = Store::open_or_recover(&path).unwrap_err().to_string();
        assert!(err.contains("missing-dir"), "{err}");
        assert!(err.contains("in memory only"), "{err}");
    }

    #[test]
    fn retention_keeps_each_tarts_state_at_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        let mut store = Store::open_or_recover(&path).unwrap().store;
        store
            .write(&[
                change("rhodes", 0, ONLINE),
                change("rhodes", 1, UP),
                change("rhodes", 2, DOWN),
                change("rhodes", 3, UP),
                change("rhodes", 60, DOWN),
                change("zürich", 5, DOWN),
            ])
            .unwrap();
        let cutoff = datetime!(2026-07-10 08:30 UTC);
        assert_eq!(store.prune(cutoff, None).unwrap(), 2);
        let (kept, _) = store.load().unwrap();
        assert_eq!(
            kept,
            [
                change("rhodes", 0, ONLINE),
                change("rhodes", 3, UP),
                change("zürich", 5, DOWN),
                change("rhodes", 60, DOWN),
            ]
        );
        // zürich left the tailnet: its old state goes; rhodes (changed
        // since the cutoff) stays even if unknown now.
        let only_karoo = |name: &str| name == "karoo";
        assert_eq!(store.prune(cutoff, Some(&only_karoo)).unwrap(), 1);
        let (kept, _) = store.load().unwrap();
        assert!(kept.iter().all(|c| c.name == "rhodes"), "{kept:?}");
        assert_eq!(kept.len(), 3);
    }
}
