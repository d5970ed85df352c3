//! Who may connect (`credentials`) and which topics each client may touch (`acl`).
//!
//! Both files are optional and re-read when they change (`watch`), like rules; a file
//! that stops parsing is reported and the previous version stays in force.
//! Without an ACL every authenticated client may use every topic except the gateway's
//! reserved ones (`RESERVED_PREFIXES`).

pub mod acl;
pub mod credentials;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

pub use acl::{Acl, Action};
pub use credentials::{Credentials, LoginRefused, User};

use crate::config::AuthConfig;
use crate::watch::{dir_of, FileWatch, WatchSettings};

/// Topic prefixes the gateway uses for itself; clients may neither publish nor
/// subscribe there.
pub const RESERVED_PREFIXES: [&str; 2] = ["$hookline/", "hookline/void/"];
/// Where a denied publish is diverted, so the broker acknowledges it without anyone
/// receiving it.
pub const DENIED_TOPIC: &str = "$hookline/denied";
/// What a denied subscription filter is replaced with: a topic nobody can publish to.
/// (rumqttd disconnects a client subscribing to any `$` filter but `$share`, so this
/// one cannot start with `$`.)
pub const VOID_FILTER: &str = "hookline/void/refused";

/// Whether `topic` is one of the gateway's own.
pub fn reserved(topic: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| topic.starts_with(p))
}

/// The access policy in force.
pub struct Access {
    anonymous: bool,
    credentials: ArcSwapOption<Credentials>,
    acl: ArcSwapOption<Acl>,
}

impl Access {
    /// Reads the configured files; errors name the file and the line.
    pub fn load(config: &AuthConfig) -> anyhow::Result<Arc<Access>> {
        let credentials =
            config.credentials.as_deref().map(|p| Credentials::from_file(p).map(Arc::new)).transpose().map_err(anyhow::Error::msg)?;
        let acl = config.acl.as_deref().map(|p| Acl::from_file(p).map(Arc::new)).transpose().map_err(anyhow::Error::msg)?;
        if config.anonymous {
            tracing::warn!("ANONYMOUS ACCESS ENABLED: any client may connect without a username (auth.anonymous)");
        }
        if acl.is_none() {
            tracing::warn!("no ACL configured (auth.acl): every client may publish and subscribe to every topic");
        }
        Ok(Arc::new(Access { anonymous: config.anonymous, credentials: ArcSwapOption::new(credentials), acl: ArcSwapOption::new(acl) }))
    }

    /// Whether a CONNECT with this username and password may use `client_id`. A client
    /// that sent no username arrives here with both empty. Without a credentials file,
    /// `auth.anonymous` admits any username. Slow (argon2): run it off the async threads.
    pub fn login(&self, username: &str, password: &str, client_id: &str) -> Result<(), LoginRefused> {
        let credentials = self.credentials.load();
        match (username.is_empty() && password.is_empty(), credentials.as_ref()) {
            (true, _) | (false, None) if self.anonymous => Ok(()),
            (true, _) | (false, None) => Err(LoginRefused::NotAuthorized),
            (false, Some(credentials)) => credentials.login(username, password, client_id),
        }
    }

    pub fn allows(&self, action: Action, client_id: &str, username: &str, topic: &str) -> bool {
        match self.acl.load().as_ref() {
            Some(acl) => acl.allows(action, client_id, username, topic),
            None => !reserved(topic),
        }
    }

    /// Re-reads the files when they change (checked on notification and once a
    /// second) until the returned watch is dropped; `None` without files to watch.
    pub fn watch(self: &Arc<Self>, config: &AuthConfig) -> anyhow::Result<Option<FileWatch>> {
        let access = self.clone();
        let credentials = config.credentials.clone();
        let acl = config.acl.clone();
        let mut dirs: Vec<PathBuf> = credentials.iter().chain(&acl).map(|file| dir_of(file)).collect();
        dirs.dedup();
        if dirs.is_empty() {
            return Ok(None);
        }
        let mut stamps = (modified(credentials.as_deref()), modified(acl.as_deref()));
        let settings =
            WatchSettings { name: "hookline-access", debounce: Duration::from_millis(100), rescan_every: Duration::from_secs(1) };
        let watch = FileWatch::start(&dirs, settings, move || {
            let now = (modified(credentials.as_deref()), modified(acl.as_deref()));
            if now.0 != stamps.0 {
                reload(credentials.as_deref(), Credentials::from_file, &access.credentials);
            }
            if now.1 != stamps.1 {
                reload(acl.as_deref(), Acl::from_file, &access.acl);
            }
            stamps = now;
        })?;
        Ok(Some(watch))
    }
}

fn modified(path: Option<&Path>) -> Option<SystemTime> {
    std::fs::metadata(path?).and_then(|m| m.modified()).ok()
}

fn reload<T>(path: Option<&Path>, read: fn(&Path) -> Result<T, String>, slot: &ArcSwapOption<T>) {
    let Some(path) = path else { return };
    match read(path) {
        Ok(value) => {
            slot.store(Some(Arc::new(value)));
            tracing::info!(file = %path.display(), "access file reloaded");
        }
        Err(e) => tracing::error!(error = %e, "access file not reloaded; the previous version stays in force"),
    }
}
