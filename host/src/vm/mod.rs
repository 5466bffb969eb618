//! The VM and its devices: QEMU's command line and machine protocol, the
//! accelerator, the vsock device, the data disk, the host folders and the
//! settings item it is given, the ISO copies it boots and the child
//! processes that run them, and powering it off.
pub mod accel;
pub mod buildkit;
pub mod datadisk;
pub mod guestcfg;
pub mod hide;
pub mod console;
pub mod images;
pub mod power;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod shares;
pub mod vsockdev;
