//! The commands that boot and manage a VM: `skiff run` in the foreground,
//! and the background lifecycle (`start`, `status`, `stop`, `rollback`).
pub mod lifecycle;
pub mod remembered;
pub mod resume;
pub mod run;
pub mod start_error;
