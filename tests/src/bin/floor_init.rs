//! The boot-time floor: a PID 1 that does nothing. It prints one line with
//! the guest uptime (the same format as Skiff's init) and powers off, so
//! `make bench` can tell the kernel's share of a boot from Skiff's.
//! Built static by the bench (`-C target-feature=+crt-static`).

use std::io::Write;

fn main() {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let line = format!("[{:5}.{:06}] floor: init started\n", ts.tv_sec, ts.tv_nsec / 1000);
    let _ = std::io::stdout().write_all(line.as_bytes());
    let _ = std::io::stdout().flush();
    // SAFETY: reboot(2) takes no pointers; as PID 1 this powers the VM off.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF) };
    // Only reached when not allowed to power off (not PID 1 / not root).
    eprintln!("floor: cannot power off: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}
