//! Things that happen in the gateway that an operator needs to see: each counted, and
//! logged without letting a client flood the log (`log_limit`).

mod log_limit;

pub use log_limit::LogLimit;
