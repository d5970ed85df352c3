//! Plumbing the stages share, apart from the stages themselves: threads the gateway owns
//! and joins (`thread`), file watching for the rules directory and the access files
//! (`watch`), and the parts `/readyz` waits for (`readiness`).

pub mod readiness;
pub mod thread;
pub mod watch;
