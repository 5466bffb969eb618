//! Early boot: the log, leaving the initramfs, the API filesystems, the
//! boot medium's `/usr`, the clock, and reading files others can write.

pub mod clock;
pub mod events;
pub mod logger;
pub mod medium;
pub mod mounts;
pub mod rootfs;
pub mod safe_file;
