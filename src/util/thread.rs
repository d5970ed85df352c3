//! A named thread that runs until asked to stop, and is joined when stopped or dropped:
//! the gateway owns every thread it starts (see `docs/configuration.md`, "Embedding").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct StoppableThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StoppableThread {
    /// Starts `run` on a thread called `name`; `run` returns soon after its flag is set.
    pub fn spawn(name: &str, run: impl FnOnce(&AtomicBool) + Send + 'static) -> std::io::Result<StoppableThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || run(&stopping))?;
        Ok(StoppableThread { stop, thread: Some(thread) })
    }

    /// Asks the thread to stop, without waiting for it.
    pub fn stop_soon(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Asks the thread to stop and waits for it.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("a gateway thread panicked");
            }
        }
    }
}

impl Drop for StoppableThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
