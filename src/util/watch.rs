//! Watching files for changes, for the rules directory and the access files alike: a
//! thread woken by file-system notifications (debounced) and by a periodic rescan that
//! backs them up, calling one `on_change` that compares what it cares about itself.
//! Dropping the `FileWatch` stops the thread and waits for it.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// What wakes the watch thread.
enum Wake {
    Changed,
    Stop,
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The platform's file notifications could not be set up.
    #[error(transparent)]
    Notifier(#[from] notify::Error),
    #[error("cannot watch {dir} for changes")]
    Dir { dir: PathBuf, source: notify::Error },
    #[error(transparent)]
    Thread(#[from] std::io::Error),
}

pub struct FileWatch {
    wake: mpsc::Sender<Wake>,
    thread: Option<JoinHandle<()>>,
}

/// How a watch behaves.
pub struct WatchSettings {
    /// Thread name, for `top -H` and the lifecycle test.
    pub name: &'static str,
    /// Quiet time after a notification before `on_change` runs: editors and copies
    /// write in several steps.
    pub debounce: Duration,
    /// `on_change` runs this often even without a notification.
    pub rescan_every: Duration,
}

impl FileWatch {
    /// Watches the directories `dirs` (not recursively; watching a file's directory
    /// survives editors that replace the file) and runs `on_change` on the watch
    /// thread after each change and every `rescan_every`.
    pub fn start(dirs: &[PathBuf], settings: WatchSettings, mut on_change: impl FnMut() + Send + 'static) -> Result<FileWatch, WatchError> {
        let (wake, woken) = mpsc::channel::<Wake>();
        let notified = wake.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = notified.send(Wake::Changed);
            }
        })?;
        for dir in dirs {
            watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|source| WatchError::Dir { dir: dir.clone(), source })?;
        }
        let WatchSettings { name, debounce, rescan_every } = settings;
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            // Dropped with the thread: no notification outlives it.
            let _watcher = watcher;
            loop {
                match woken.recv_timeout(rescan_every) {
                    Ok(Wake::Changed) => loop {
                        match woken.recv_timeout(debounce) {
                            Ok(Wake::Changed) => continue,
                            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                            Err(RecvTimeoutError::Timeout) => break,
                        }
                    },
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                }
                on_change();
            }
        })?;
        Ok(FileWatch { wake, thread: Some(thread) })
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        let _ = self.wake.send(Wake::Stop);
        if let Some(thread) = self.thread.take() {
            // Waits at most for an `on_change` under way (a rule being compiled).
            let _ = thread.join();
        }
    }
}

/// The directory a file lives in, for watching it (`.` for a bare file name).
pub fn dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
