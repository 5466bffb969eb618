//! What the guest's console says of its boot: milestones, engine ready,
//! powering off. Read from the serial log the init writes for people.

/// Boot milestones on the guest console: what a line contains, and its name.
const MILESTONES: [(&str, &str); 5] = [
    ("Linux version", "kernel"),
    ("skiff: init started", "init"),
    ("skiff: medium:", "medium"),
    ("skiff: net", "network"),
    ("skiff: engine", "engine"),
];

/// True once the guest's console says its engine answers (init's
/// `engine: ready` line).
pub fn engine_ready_on_console(console: &str) -> bool {
    console.contains("skiff: engine: ready")
}

/// True once the guest's console says it powers off (init's last line).
pub fn powered_off_on_console(console: &str) -> bool {
    console.contains("skiff: shutdown: powering off")
}

/// The milestones reached so far in a console text, in boot order.
pub fn milestones(console: &str) -> Vec<&'static str> {
    MILESTONES.iter().filter(|(needle, _)| console.contains(needle)).map(|(_, name)| *name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_in_boot_order() {
        let c = "[ 0.0] Linux version 6.12\n[ 2.0] skiff: init started (initramfs)\n";
        assert_eq!(milestones(c), ["kernel", "init"]);
        assert!(milestones("").is_empty());
    }
}
