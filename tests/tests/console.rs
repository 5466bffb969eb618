//! What reaches the guest's console and `skiff logs` from outside: text a
//! container, an image reference or a debug-shell command chooses. It
//! arrives escaped (`\e` for ESC, `\xNN` for other controls), never as a
//! terminal sequence that would retitle, clear or rewrite the reader's
//! terminal. (Podman's own log quotes what it logs, and the init logs a
//! shell's command line quoted; the init's logger escapes every line
//! again, so text that reaches the console by another way is covered too:
//! `init/src/boot/logger.rs` has the unit test of that last step.)

use skiff_tests::{busybox_image, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";
/// Sets the terminal's title (OSC 0), then a carriage return and a screen clear (CSI 2J).
const HOSTILE: &str = "\x1b]0;skiff-owned\x07\r\x1b[2J";

#[test]
fn outside_text_reaches_the_console_escaped() {
    let scratch = Scratch::new("console");
    let image = busybox_image(&scratch.0, IMAGE);
    let vm = Vm::boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    // A container's output and exit, exec and run errors naming what it chose,
    // an image reference, and a debug-shell command line.
    let cases: Vec<Vec<String>> = vec![
        vec!["run".into(), "-d".into(), "--name".into(), "c".into(), IMAGE.into(), "sh".into(), "-c".into(), format!("printf '{HOSTILE}'; echo '{HOSTILE}' >&2; sleep 600")],
        vec!["exec".into(), "c".into(), format!("/no{HOSTILE}such")],
        vec!["exec".into(), "-w".into(), format!("/no{HOSTILE}dir"), "c".into(), "true".into()],
        vec!["run".into(), "--rm".into(), IMAGE.into(), format!("/missing{HOSTILE}")],
        vec!["run".into(), "--rm".into(), "-e".into(), format!("X={HOSTILE}"), "--workdir".into(), format!("/w{HOSTILE}"), IMAGE.into(), "true".into()],
        vec!["pull".into(), format!("bad{HOSTILE}name")],
        vec!["create".into(), "--name".into(), format!("n{HOSTILE}"), IMAGE.into()],
        vec!["stop".into(), format!("gone{HOSTILE}")],
    ];
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = vm.docker(&args);
        eprintln!("console: docker {} -> {:?}", args[0], out.status.code());
    }
    vm.shell_ok(&format!("echo '{HOSTILE}' > /dev/null"));
    let logs = String::from_utf8_lossy(&vm.skiff(&["logs"], None).stdout).into_owned();
    let console = vm.console();
    let marked: Vec<&str> = console.lines().filter(|l| l.contains("skiff-owned")).collect();
    for l in &marked {
        eprintln!("console: {}", l.escape_debug());
    }
    vm.shutdown();
    for (name, text) in [("the console", &console), ("skiff logs", &logs)] {
        assert!(!text.contains('\x1b'), "{name} carries a raw ESC: {:?}", text.lines().filter(|l| l.contains('\x1b')).collect::<Vec<_>>());
        assert!(!text.contains('\x07'), "{name} carries a raw BEL");
    }
    assert!(!marked.is_empty(), "no hostile text reached the console at all: the test proved nothing");
}
