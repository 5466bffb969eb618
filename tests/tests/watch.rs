//! Host edits reach file watchers in containers: a container watches
//! folders of a share with inotify while the host creates, writes, renames
//! and deletes files there; each shows as IN_MODIFY on the file or its
//! folder within seconds, a single write does not echo back and forth, a
//! burst of 10,000 files is coalesced without losing the last change, and
//! with `--watch off` the container hears nothing (as before).

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use skiff_tests::{busybox_root, image_tar, static_test_bin, Scratch, Vm};

const IMAGE: &str = "skiff-test/watch:latest";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A busybox image with the static `inotify_watch`.
fn watch_image(scratch: &Path) -> std::path::PathBuf {
    let root = scratch.join("watch-root");
    busybox_root(&root);
    fs::copy(static_test_bin("inotify_watch"), root.join("bin/inotify_watch")).unwrap();
    image_tar(scratch, &root, IMAGE, r#""Env":["PATH=/bin"],"Cmd":["sh"]"#)
}

/// The watcher's event lines so far (`EVENTS\tFOLDER\tNAME`).
fn events(vm: &Vm) -> Vec<String> {
    let logs = vm.docker_ok(&["logs", "w"]);
    logs.lines().filter(|l| *l != "ready").map(str::to_string).collect()
}

/// Waits up to `limit` for an event line after the first `after` that
/// `want` accepts; returns how long it took.
fn seen(vm: &Vm, after: usize, limit: Duration, want: impl Fn(&str) -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if events(vm).iter().skip(after).any(|l| want(l)) {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Waits until no new event line came for `quiet`; returns the lines.
fn settled(vm: &Vm, quiet: Duration, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut last = events(vm);
    let mut since = Instant::now();
    while start.elapsed() < limit {
        thread::sleep(Duration::from_millis(500));
        let now = events(vm);
        if now.len() != last.len() {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    last
}

/// Boots with `shared` as a share, loads the image and starts the watcher
/// on `folders`.
fn boot_watching(scratch: &Scratch, shared: &Path, folders: &[&Path], extra: &[&str]) -> Vm {
    let image = watch_image(&scratch.0);
    let mut args = vec!["--share", s(shared)];
    args.extend(extra);
    let vm = Vm::boot_with(&scratch.0.join("state"), &args);
    vm.docker_ok(&["load", "-i", s(&image)]);
    let volume = format!("{0}:{0}", s(shared));
    let mut run = vec!["run", "-d", "--name", "w", "--network", "none", "-v", &volume, IMAGE, "inotify_watch"];
    run.extend(folders.iter().map(|f| s(f)));
    vm.docker_ok(&run);
    let start = Instant::now();
    while !vm.docker_ok(&["logs", "w"]).starts_with("ready") {
        assert!(start.elapsed() < Duration::from_secs(60), "the watcher never started: {}", vm.docker_ok(&["logs", "w"]));
        thread::sleep(Duration::from_millis(200));
    }
    vm
}

#[test]
fn host_edits_reach_a_watching_container() {
    let scratch = Scratch::new("watch");
    let shared = scratch.0.join("shared");
    let (app, burst, last) = (shared.join("app"), shared.join("burst"), shared.join("last"));
    for d in [&app, &burst, &last] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(last.join("target.txt"), "t\n").unwrap();
    std::os::unix::fs::symlink("../last/target.txt", app.join("link")).unwrap();
    let vm = boot_watching(&scratch, &shared, &[&app, &burst, &last], &[]);
    let limit = Duration::from_secs(15);
    let line = |folder: &Path, name: &str| format!("MODIFY\t{}\t{name}", s(folder));

    // Created (and written): IN_MODIFY on the file, in its folder's watch.
    let n = events(&vm).len();
    fs::write(app.join("new.txt"), "1\n").unwrap();
    let took = seen(&vm, n, limit, |l| l == line(&app, "new.txt")).expect("the container never saw the new file");
    eprintln!("watch: create seen after {:.2}s", took.as_secs_f64());

    // Written again: seen again; one write is a few events at most, and
    // then nothing (the guest's touch does not come back as an edit).
    let n = settled(&vm, Duration::from_secs(3), limit).len();
    fs::write(app.join("new.txt"), "2\n").unwrap();
    let took = seen(&vm, n, limit, |l| l == line(&app, "new.txt")).expect("the container never saw the write");
    eprintln!("watch: write seen after {:.2}s", took.as_secs_f64());
    let after_write = settled(&vm, Duration::from_secs(5), Duration::from_secs(30));
    let echoes = &after_write[n..];
    assert!(echoes.len() <= 2, "one host write gave the container {} events: {echoes:?}", echoes.len());

    // Renamed: the new name is modified, the folder too (the old name is gone).
    let n = after_write.len();
    fs::rename(app.join("new.txt"), app.join("renamed.txt")).unwrap();
    seen(&vm, n, limit, |l| l == line(&app, "renamed.txt")).expect("the container never saw the new name");
    seen(&vm, n, limit, |l| l == line(&app, "")).expect("the container never saw the folder change on rename");

    // Deleted: the folder is modified.
    let n = settled(&vm, Duration::from_secs(3), limit).len();
    fs::remove_file(app.join("renamed.txt")).unwrap();
    let took = seen(&vm, n, limit, |l| l == line(&app, "")).expect("the container never saw the delete");
    eprintln!("watch: delete seen after {:.2}s", took.as_secs_f64());

    // Idle stays idle.
    let n = settled(&vm, Duration::from_secs(3), limit).len();
    thread::sleep(Duration::from_secs(10));
    let idle = events(&vm);
    assert_eq!(idle.len(), n, "events while nothing changed: {:?}", &idle[n..]);

    // A burst of 10,000 files, then one more elsewhere: the last change
    // is seen, and the burst costs the container far fewer events than files.
    let started = Instant::now();
    for i in 0..10_000 {
        fs::write(burst.join(format!("f{i}")), "x").unwrap();
    }
    fs::write(last.join("final.txt"), "done\n").unwrap();
    eprintln!("watch: wrote 10,001 files in {:.2}s", started.elapsed().as_secs_f64());
    let took = seen(&vm, n, Duration::from_secs(120), |l| l == line(&last, "final.txt") || l == line(&last, ""));
    eprintln!("watch: last change of the burst seen after {:.2}s", took.expect("the last change of the burst was lost").as_secs_f64());
    let all = settled(&vm, Duration::from_secs(5), Duration::from_secs(120));
    let in_burst = all[n..].iter().filter(|l| l.contains(s(&burst))).count();
    eprintln!("watch: the burst of 10,000 files gave the container {in_burst} events");
    assert!(in_burst >= 1, "nothing seen of the burst");
    assert!(in_burst <= 2_000, "the burst was not coalesced: {in_burst} events");
    assert!(all[n..].iter().all(|l| l.starts_with("MODIFY")), "only IN_MODIFY is raised: {:?}", all[n..].iter().find(|l| !l.starts_with("MODIFY")));

    // The guest never follows a symlink nor a `..` that a named path holds.
    let mut control = vm.authed_vsock(skiff_proto::control::DEFAULT_CONTROL_PORT).unwrap();
    control.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    control.write_all(skiff_proto::control::encode(&skiff_proto::control::Request::Touch).as_bytes()).unwrap();
    let mut touch = |paths: &[String]| {
        let text = skiff_proto::touch::encode(paths);
        control.write_all(text.as_bytes()).unwrap();
        let mut answer = [0u8; 3];
        control.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, skiff_proto::touch::DONE);
    };
    let n = settled(&vm, Duration::from_secs(3), limit).len();
    let target = line(&last, "target.txt");
    touch(&[format!("{}/link", s(&app)), format!("{}/../last/target.txt", s(&app)), "/etc/hostname".into()]);
    thread::sleep(Duration::from_secs(3));
    assert!(!events(&vm)[n..].contains(&target), "the guest followed a symlink or `..`: {:?}", &events(&vm)[n..]);
    touch(&[format!("{}/target.txt", s(&last))]);
    seen(&vm, n, limit, |l| l == target).expect("the same file named plainly was not touched");
    vm.shutdown();
}

#[test]
fn with_watch_off_the_container_hears_nothing() {
    let scratch = Scratch::new("watch-off");
    let shared = scratch.0.join("shared");
    fs::create_dir_all(&shared).unwrap();
    let vm = boot_watching(&scratch, &shared, &[&shared], &["--watch", "off"]);
    fs::write(shared.join("new.txt"), "1\n").unwrap();
    // The file is there for the container all the same.
    assert_eq!(vm.docker_ok(&["exec", "w", "cat", s(&shared.join("new.txt"))]), "1\n");
    thread::sleep(Duration::from_secs(10));
    assert_eq!(events(&vm), Vec::<String>::new(), "events with --watch off");
    vm.shutdown();
}
