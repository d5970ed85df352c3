//! The access gate: the credentials, ACL and JWT keys in force, reloaded when their files
//! change, and the login checks that use them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use super::acl::{Acl, Action};
use super::cache::LoginCache;
use super::checks::Checks;
use super::credentials::{Credentials, LoginRefused};
use super::error::AccessError;
use super::jwt::Jwt;
use crate::config::AuthConfig;
use crate::names::reserved;
use crate::util::watch::{dir_of, FileWatch, WatchSettings};

/// The access policy in force.
pub struct Access {
    anonymous: bool,
    credentials: ArcSwapOption<Credentials>,
    acl: ArcSwapOption<Acl>,
    jwt: ArcSwapOption<Jwt>,
    cache: Arc<LoginCache>,
    checks: Arc<Checks>,
}

/// What deciding a login took, for the caller to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCost {
    /// No check: anonymous, an unknown user, no login needed.
    Free,
    /// From the cache of logins verified lately.
    Cached,
    /// On the login threads: a password hash or a token (or refused there as busy).
    Checked,
}

impl Access {
    /// Reads the configured files (errors name the file and the line) and starts the
    /// login checks; a check that cannot start within `max_wait` is refused as busy.
    pub fn load(config: &AuthConfig, max_wait: Duration) -> Result<Arc<Access>, AccessError> {
        let credentials =
            config.credentials.as_deref().map(|p| Credentials::from_file(p).map(Arc::new)).transpose().map_err(AccessError::Credentials)?;
        let acl = config.acl.as_deref().map(|p| Acl::from_file(p).map(Arc::new)).transpose().map_err(AccessError::Acl)?;
        let jwt = Jwt::load(&config.jwt).map_err(AccessError::Jwt)?.map(Arc::new);
        if config.anonymous {
            tracing::warn!("ANONYMOUS ACCESS ENABLED: any client may connect without a username (auth.anonymous)");
        }
        if acl.is_none() {
            tracing::warn!("no ACL configured (auth.acl): every client may publish and subscribe to every topic");
        }
        let checks = Checks::start(config.check_threads, config.check_queue, max_wait).map_err(AccessError::CheckThreads)?;
        Ok(Arc::new(Access {
            anonymous: config.anonymous,
            credentials: ArcSwapOption::new(credentials),
            acl: ArcSwapOption::new(acl),
            jwt: ArcSwapOption::new(jwt),
            cache: Arc::new(LoginCache::new(Duration::from_secs(config.cache_ttl_s))),
            checks,
        }))
    }

    /// Whether a CONNECT with this username and password may use `client_id`, and the
    /// username it logs in as. A client that sent no username arrives here with both
    /// empty. A password shaped as a token is checked as one when `auth.jwt` is set.
    /// Without a credentials file, `auth.anonymous` admits any username.
    pub async fn login(&self, username: &str, password: &str, client_id: &str) -> (Result<String, LoginRefused>, LoginCost) {
        if let Some(jwt) = self.jwt.load_full().filter(|_| Jwt::looks_like(password)) {
            let (token, client_id) = (password.to_string(), client_id.to_string());
            let verdict = self.checks.run(move || jwt.verify(&token, &client_id)).await.unwrap_or(Err(LoginRefused::Busy));
            return (verdict, LoginCost::Checked);
        }
        let credentials = self.credentials.load_full();
        let credentials = match (username.is_empty() && password.is_empty(), credentials) {
            (true, _) | (false, None) if self.anonymous => return (Ok(username.to_string()), LoginCost::Free),
            (true, _) | (false, None) => return (Err(LoginRefused::NotAuthorized), LoginCost::Free),
            (false, Some(credentials)) => credentials,
        };
        let Some(user) = credentials.users.get(username) else { return (Err(LoginRefused::BadCredentials), LoginCost::Free) };
        if self.cache.holds(username, user.hash(), password) {
            let verdict = match user.may_use(username, client_id) {
                true => Ok(username.to_string()),
                false => Err(LoginRefused::NotAuthorized),
            };
            return (verdict, LoginCost::Cached);
        }
        let cache = self.cache.clone();
        let (username, password, client_id) = (username.to_string(), password.to_string(), client_id.to_string());
        let check = move || {
            let verdict = credentials.login(&username, &password, &client_id);
            if verdict != Err(LoginRefused::BadCredentials) {
                if let Some(user) = credentials.users.get(&username) {
                    cache.insert(&username, user.hash(), &password);
                }
            }
            verdict.map(|()| username)
        };
        (self.checks.run(check).await.unwrap_or(Err(LoginRefused::Busy)), LoginCost::Checked)
    }

    pub fn allows(&self, action: Action, client_id: &str, username: &str, topic: &str) -> bool {
        match self.acl.load().as_ref() {
            Some(acl) => acl.allows(action, client_id, username, topic),
            None => !reserved(topic),
        }
    }

    /// Re-reads the files when they change (checked on notification and once a
    /// second) until the returned watch is dropped; `None` without files to watch.
    pub fn watch(self: &Arc<Self>, config: &AuthConfig) -> Result<Option<FileWatch>, AccessError> {
        let access = self.clone();
        let credentials = config.credentials.clone();
        let acl = config.acl.clone();
        let jwt = config.jwt.clone();
        let jwt_files: Vec<PathBuf> = [&jwt.public_key, &jwt.secret_file, &jwt.jwks].into_iter().flatten().cloned().collect();
        let mut dirs: Vec<PathBuf> = credentials.iter().chain(&acl).chain(&jwt_files).map(|file| dir_of(file)).collect();
        dirs.sort();
        dirs.dedup();
        if dirs.is_empty() {
            return Ok(None);
        }
        let jwt_stamp = move || jwt_files.iter().map(|f| modified(Some(f))).collect::<Vec<_>>();
        let mut stamps = (modified(credentials.as_deref()), modified(acl.as_deref()), jwt_stamp());
        let settings =
            WatchSettings { name: "hookline-access", debounce: Duration::from_millis(100), rescan_every: Duration::from_secs(1) };
        let watch = FileWatch::start(&dirs, settings, move || {
            let now = (modified(credentials.as_deref()), modified(acl.as_deref()), jwt_stamp());
            if now.0 != stamps.0 {
                reload(credentials.as_deref(), Credentials::from_file, &access.credentials);
            }
            if now.1 != stamps.1 {
                reload(acl.as_deref(), Acl::from_file, &access.acl);
            }
            if now.2 != stamps.2 {
                match Jwt::load(&jwt) {
                    Ok(keys) => {
                        access.jwt.store(keys.map(Arc::new));
                        tracing::info!("JWT keys reloaded (auth.jwt)");
                    }
                    Err(e) => tracing::error!(error = %e, "JWT keys not reloaded; the previous ones stay in force"),
                }
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
