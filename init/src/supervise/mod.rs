//! Supervision: PID 1's signals, the engine and its restarts, reaping
//! every child, and the shutdown sequence.

pub mod backoff;
pub mod children;
pub mod engine;
pub mod power;
pub mod reaper;
pub mod signals;
pub mod sys;

#[cfg(test)]
pub mod fake;
