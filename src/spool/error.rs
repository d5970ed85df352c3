//! What can go wrong opening the spool: each error names the shard's directory, and
//! the key that places it (`buffer.dir`) where the fix is to be made there.

use std::path::PathBuf;

/// Why the spool could not open.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot open the spool shard {path} (buffer.dir); check it is a writable directory")]
    OpenShard { path: PathBuf, source: std::io::Error },
    #[error("cannot remove the empty spool shard {path}")]
    RemoveShard { path: PathBuf, source: std::io::Error },
    #[error("cannot start the spool's sync thread")]
    SyncThread(#[source] std::io::Error),
}
