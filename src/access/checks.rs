//! The login checks that cost (password hashes, token signatures), on a pool of threads
//! of their own behind a bounded queue, so that a flood of CONNECTs, with passwords or
//! without valid ones, costs the gateway at most `auth.check_threads` checks at a time
//! and `auth.check_queue` waiting: an argon2 check takes 19 MiB while it runs.
//!
//! A check that cannot be queued, or that waited longer than a CONNECT may (so its answer
//! would come after the client's handshake timed out), is not run: the CONNECT is
//! refused with "server busy", which a client takes as "try again later".

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The pool is full: the check was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

struct Job {
    queued: Instant,
    check: Box<dyn FnOnce() + Send>,
}

pub struct Checks {
    queue: flume::Sender<Job>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Checks {
    /// Starts `threads` checking threads (0: one per core) behind a queue of `queue`
    /// checks; a check queued longer than `max_wait` is dropped unrun.
    pub fn start(threads: usize, queue: usize, max_wait: Duration) -> std::io::Result<Arc<Checks>> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (tx, rx) = flume::bounded::<Job>(queue);
        let mut running = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = rx.clone();
            running.push(std::thread::Builder::new().name(format!("hookline-login-{i}")).spawn(move || {
                for job in rx.iter() {
                    if job.queued.elapsed() <= max_wait {
                        (job.check)();
                    }
                }
            })?);
        }
        Ok(Arc::new(Checks { queue: tx, threads: Mutex::new(running) }))
    }

    /// Runs `check` on the pool and waits for its result; `Busy` when the queue is full
    /// or the check waited too long to be worth running.
    pub async fn run<T: Send + 'static>(&self, check: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            queued: Instant::now(),
            check: Box::new(move || {
                let _ = tx.send(check());
            }),
        };
        self.queue.try_send(job).map_err(|_| Busy)?;
        rx.await.map_err(|_| Busy)
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        // The threads end when the queue's last sender is gone: replace ours, then wait.
        let (closed, _) = flume::bounded(0);
        drop(std::mem::replace(&mut self.queue, closed));
        for thread in self.threads.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_beyond_the_queue_are_refused_and_the_rest_run() {
        let checks = Checks::start(1, 2, Duration::from_secs(10)).unwrap();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        // One check runs (held at the gate), two wait in the queue, the fourth is refused.
        let mut running = Vec::new();
        for i in 0..3 {
            let (checks, gate) = (checks.clone(), gate.clone());
            running.push(tokio::spawn(async move {
                checks
                    .run(move || {
                        let _ = gate.lock().unwrap().recv();
                        i
                    })
                    .await
            }));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(checks.run(|| 3).await, Err(Busy));
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        let mut results = Vec::new();
        for check in running {
            results.push(check.await.unwrap());
        }
        assert_eq!(results, [Ok(0), Ok(1), Ok(2)]);
    }

    #[tokio::test]
    async fn a_check_that_waited_too_long_is_not_run() {
        let checks = Checks::start(1, 4, Duration::from_millis(20)).unwrap();
        let slow = checks.clone();
        let first = tokio::spawn(async move { slow.run(|| std::thread::sleep(Duration::from_millis(100))).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(checks.run(|| ()).await, Err(Busy), "queued behind a 100 ms check, for longer than 20 ms");
        assert_eq!(first.await.unwrap(), Ok(()));
    }
}
