//! What can go wrong loading the access files, starting the login checks and watching
//! the files, and writing the credentials file.

use crate::util::watch::WatchError;

/// Why access could not be set up, or the credentials file not written. The readers of
/// the credentials, ACL and JWT files give their reason as text naming the file and the
/// line; a failed write is named by its caller, who knows which file it asked for.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Credentials(String),
    #[error("{0}")]
    Acl(String),
    #[error("{0}")]
    Jwt(String),
    #[error("cannot start the login check threads")]
    CheckThreads(#[source] std::io::Error),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Serialize(#[from] toml::ser::Error),
    #[error(transparent)]
    WriteTemporary(std::io::Error),
    #[error(transparent)]
    Replace(std::io::Error),
}
