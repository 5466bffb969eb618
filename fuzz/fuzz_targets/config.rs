//! Settings from outside: the config file (data disk, cidata, the host's
//! fw_cfg fragment) and the kernel command line, resolved together.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::config::{self, cmdline, file, Source};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (from_file, _) = file::parse_bytes(data, Source::File("fuzz.toml".into()));
    let (from_cmdline, _) = cmdline::parse(&text);
    let _ = config::resolve([from_cmdline, from_file]);
});
