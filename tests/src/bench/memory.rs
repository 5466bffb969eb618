//! Guest memory, read from the guest's own /proc. The image has no shell,
//! so a privileged busybox container in the host pid namespace reads it
//! (`--pid=host`, and `/` bind-mounted read-only for the root tmpfs). The
//! probe itself (its conmon and shell) is alive while it reads, so its RSS
//! is reported too: it is included in "used".

use std::collections::HashMap;

use crate::Vm;

/// Figures in KiB.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub mem_total: u64,
    /// MemTotal − MemAvailable.
    pub used: u64,
    /// Shmem: every tmpfs and shared memory page (the root filesystem lives here).
    pub shmem: u64,
    /// Used blocks of the tmpfs root.
    pub root_tmpfs_used: u64,
    pub init_rss: u64,
    pub engine_rss: u64,
    /// The engine's anonymous memory (Go heap and stacks: what GOGC acts on);
    /// the rest of its RSS is its binary's pages, page cache that counts as available.
    pub engine_anon: u64,
    /// Kernel: every process's anonymous pages, unreclaimable slab, kernel stacks, page tables.
    pub anon_pages: u64,
    pub slab_unreclaimable: u64,
    pub kernel_stack: u64,
    pub page_tables: u64,
    /// The probe container's conmon and shell.
    pub probe_rss: u64,
}

/// The shell script the probe runs; `engine_pid` is the podman service.
pub fn probe_script(engine_pid: u32) -> String {
    format!(
        "echo '== meminfo'; cat /proc/meminfo; echo '== init'; cat /proc/1/status; \
         echo '== engine'; cat /proc/{engine_pid}/status; \
         echo '== probe'; for p in /proc/[0-9]*; do case \"$(cat $p/comm 2>/dev/null)\" in conmon) grep VmRSS $p/status;; esac; done; \
         grep VmRSS /proc/$$/status; echo '== df'; df -k /host"
    )
}

/// Splits the probe's output into its `== name` sections.
pub fn sections(text: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            current = Some(name.trim().to_string());
            out.entry(name.trim().to_string()).or_default();
        } else if let Some(name) = &current {
            let s = out.get_mut(name).expect("section exists");
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

/// A `Key:   123 kB` value (meminfo, status) in KiB.
pub fn kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

/// The sum of every `VmRSS:` line.
fn rss_sum(text: &str) -> u64 {
    text.lines().filter(|l| l.starts_with("VmRSS:")).filter_map(|l| kib(l, "VmRSS")).sum()
}

/// Used KiB from `df -k` output (second line, third column).
pub fn df_used(text: &str) -> Option<u64> {
    text.lines().nth(1)?.split_whitespace().nth(2)?.parse().ok()
}

/// Reads the figures out of the probe's output.
pub fn parse(text: &str) -> Option<Memory> {
    let s = sections(text);
    let meminfo = s.get("meminfo")?;
    let total = kib(meminfo, "MemTotal")?;
    Some(Memory {
        mem_total: total,
        used: total.saturating_sub(kib(meminfo, "MemAvailable")?),
        shmem: kib(meminfo, "Shmem")?,
        root_tmpfs_used: df_used(s.get("df")?)?,
        init_rss: kib(s.get("init")?, "VmRSS")?,
        engine_rss: kib(s.get("engine")?, "VmRSS")?,
        engine_anon: kib(s.get("engine")?, "RssAnon")?,
        anon_pages: kib(meminfo, "AnonPages")?,
        slab_unreclaimable: kib(meminfo, "SUnreclaim")?,
        kernel_stack: kib(meminfo, "KernelStack")?,
        page_tables: kib(meminfo, "PageTables")?,
        probe_rss: rss_sum(s.get("probe")?),
    })
}

/// Runs the probe container (image `image`, busybox) and parses what it read.
pub fn probe(vm: &Vm, image: &str, engine_pid: u32) -> Memory {
    let script = probe_script(engine_pid);
    let out = vm.docker_ok(&["run", "--rm", "--privileged", "--pid=host", "-v", "/:/host:ro", image, "sh", "-c", &script]);
    parse(&out).unwrap_or_else(|| panic!("cannot read the memory probe's output:\n{out}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "== meminfo
MemTotal:        2044168 kB
MemFree:         1923836 kB
MemAvailable:    1914116 kB
AnonPages:         10312 kB
Shmem:             80048 kB
SUnreclaim:        12868 kB
KernelStack:        1472 kB
PageTables:          716 kB
== init
Name:\tinit
VmRSS:\t    1448 kB
== engine
Name:\tpodman
VmRSS:\t   60880 kB
RssAnon:\t   12000 kB
== probe
VmRSS:\t    1200 kB
VmRSS:\t     300 kB
== df
Filesystem           1K-blocks      Used Available Use% Mounted on
tmpfs                  1533128     79800   1453328   5% /host
";

    #[test]
    fn probe_output_parses() {
        let m = parse(OUT).unwrap();
        assert_eq!(
            m,
            Memory {
                mem_total: 2044168,
                used: 2044168 - 1914116,
                shmem: 80048,
                root_tmpfs_used: 79800,
                init_rss: 1448,
                engine_rss: 60880,
                engine_anon: 12000,
                anon_pages: 10312,
                slab_unreclaimable: 12868,
                kernel_stack: 1472,
                page_tables: 716,
                probe_rss: 1500,
            }
        );
    }

    #[test]
    fn missing_pieces_give_none() {
        assert!(parse("== meminfo\nMemTotal: 1 kB\n").is_none());
        assert!(parse(&OUT.replace("VmRSS:\t   60880 kB", "")).is_none());
        assert_eq!(kib("MemTotalX: 5 kB\nMemTotal: 7 kB", "MemTotal"), Some(7));
        assert_eq!(df_used("header only"), None);
    }

    #[test]
    fn script_names_the_engine_pid() {
        assert!(probe_script(66).contains("/proc/66/status"));
    }
}
