//! Wire formats that the Skiff guest init and the host CLI both speak.
//!
//! Pure code only (bytes in, values out; `toml`'s parser is the one
//! dependency), so both sides share one tested
//! implementation instead of two copies; one exception, `bzimage`, runs the
//! `xz` tool (host side only).

pub mod auth;
pub mod bzimage;
pub mod control;
pub mod copy;
pub mod datagram;
pub mod events;
pub mod framing;
pub mod guest_settings;
pub mod http;
pub mod hybrid;
pub mod shares;
pub mod ports;
pub mod shell;
pub mod status;
pub mod touch;

use std::io::{self, Read};

/// Reads one `\n`-terminated line (without it) of at most `max` bytes, one
/// byte at a time so nothing after it is consumed. A close before the
/// newline is `UnexpectedEof`; a longer line is `InvalidData`.
pub fn read_line<R: Read + ?Sized>(r: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the end of a line")),
            Ok(_) if byte[0] == b'\n' => return Ok(line),
            Ok(_) if line.len() >= max => return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long")),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The kernel command line of the ISO's boot entry: image/cmdline, which
/// build-iso.sh writes into grub.cfg, `skiff run` passes on a direct kernel
/// boot and the bench's floor boot uses. Defined once, in that file.
pub const KERNEL_CMDLINE: &str = include_str!("../../image/cmdline").trim_ascii();

/// The aarch64 ISO's kernel command line (image/cmdline.aarch64): hvc0 for
/// hypervisors without a PL011 (Apple's); the last console, the PL011, is
/// /dev/console where it exists.
pub const KERNEL_CMDLINE_AARCH64: &str = include_str!("../../image/cmdline.aarch64").trim_ascii();

/// QEMU fw_cfg item in which `skiff run` tells the guest how many data
/// disks it attached (decimal text), so a boot without one (`--ephemeral`)
/// does not wait for a late disk. The guest reads it under
/// /sys/firmware/qemu_fw_cfg/by_name/.
pub const FW_CFG_DATA_DISKS: &str = "opt/skiff/data-disks";

/// The guest's vsock port for the engine API (Docker's historic plain-text port).
/// Override with `skiff.port=N` on the kernel command line.
pub const DEFAULT_ENGINE_PORT: u32 = 2375;

/// The guest's longest clean shutdown, trigger to power-off, in seconds
/// (the sum of the init's step limits; a unit test there keeps it equal).
/// The host waits longer than this before it kills the VM.
pub const GUEST_SHUTDOWN_WORST_CASE_SECS: u64 = 72;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_bounded_line() {
        let mut input: &[u8] = b"OK 5\nrest";
        assert_eq!(read_line(&mut input, 8).unwrap(), b"OK 5");
        assert_eq!(input, b"rest");
        assert_eq!(read_line(&mut &b"no newline"[..], 64).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read_line(&mut &b"123456789\n"[..], 8).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(read_line(&mut &b"12345678\n"[..], 8).unwrap(), b"12345678");
    }

    #[test]
    fn kernel_command_line_is_one_line_grub_can_take() {
        // build-iso.sh puts it into grub.cfg with sed: one line, no `|`, `&` or `\`.
        assert!(KERNEL_CMDLINE.contains("console=ttyS0"), "the init logs to the serial console: {KERNEL_CMDLINE}");
        assert!(KERNEL_CMDLINE_AARCH64.ends_with("console=ttyAMA0,115200 panic=10"), "{KERNEL_CMDLINE_AARCH64}");
        for line in [KERNEL_CMDLINE, KERNEL_CMDLINE_AARCH64] {
            assert!(!line.chars().any(|c| matches!(c, '\n' | '|' | '&' | '\\')), "{line:?}");
        }
    }
}
