//! Early boot: the log, leaving the initramfs, the API filesystems, the
//! boot medium's `/usr`, and the clock.

pub mod clock;
pub mod logger;
pub mod medium;
pub mod mounts;
pub mod rootfs;
