//! Plumbing the stages share, apart from the stages themselves: threads the gateway owns
//! and joins (`thread`), file watching for the rules directory and the access files
//! (`watch`), the parts `/readyz` waits for (`readiness`), and boxing a future so its
//! awaiting task stays small (`boxed`).

pub mod boxed;
pub mod readiness;
pub mod thread;
pub mod watch;
