//! Console logging: every line carries the guest uptime, like the kernel's
//! own printk timestamps, so boot milestones can be read off the serial log.

use std::io::Write;
use std::time::Duration;

use rustix::time::{clock_gettime, ClockId};

struct Console;

/// Time since boot (CLOCK_BOOTTIME, the clock printk also follows).
pub fn uptime() -> Duration {
    let ts = clock_gettime(ClockId::Boottime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Formats one console line; kept apart from the writer so it can be tested.
pub fn format_line(up: Duration, level: log::Level, msg: &str) -> String {
    let tag = match level {
        log::Level::Error => "ERROR: ",
        log::Level::Warn => "warning: ",
        _ => "",
    };
    format!("[{:5}.{:06}] skiff: {tag}{msg}\n", up.as_secs(), up.subsec_micros())
}

impl log::Log for Console {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format_line(uptime(), record.level(), &record.args().to_string());
            // One write per line keeps lines whole when threads log at once.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

static CONSOLE: Console = Console;

/// Installs the console logger; `debug` lowers the level to Debug.
pub fn init(debug: bool) {
    let _ = log::set_logger(&CONSOLE);
    log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_uptime_and_level() {
        let line = format_line(Duration::from_micros(1_234_567), log::Level::Info, "engine ready");
        assert_eq!(line, "[    1.234567] skiff: engine ready\n");
        let line = format_line(Duration::from_secs(2), log::Level::Warn, "no disk");
        assert_eq!(line, "[    2.000000] skiff: warning: no disk\n");
    }
}
