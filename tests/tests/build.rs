//! Building images with today's Docker clients, end to end: Debian 13's
//! docker CLI 26 with its buildx and compose plugins (as `apt install
//! docker-cli docker-buildx docker-compose` leaves them), offline, with no
//! environment variable and no client setting beyond DOCKER_HOST. buildx
//! finds a BuildKit builder on Skiff's socket (skiff-buildkit, which has the
//! engine build), so it never falls back to a `docker-container` builder,
//! and the images land in the engine.
//!
//! The clients come from `make clients` (scripts/fetch-clients.sh), in
//! `SKIFF_CACHE/clients/trixie`, or `SKIFF_CLIENTS`; without them every
//! test here fails saying so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use skiff_tests::{busybox_image, run_with_input, Scratch, Vm};

/// Debian 13's docker CLI and plugins, with a private DOCKER_CONFIG holding
/// just the plugins (a fresh user's setup).
struct Clients {
    docker: PathBuf,
    config: PathBuf,
}

impl Clients {
    fn new(scratch: &Path) -> Clients {
        let dir = std::env::var_os("SKIFF_CLIENTS").map(PathBuf::from).unwrap_or_else(|| {
            let cache = std::env::var_os("SKIFF_CACHE").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/skiff")
            });
            cache.join("clients/trixie")
        });
        let docker = dir.join("docker");
        assert!(
            docker.is_file(),
            "NO TRIXIE DOCKER CLIENTS at {}: run `make clients` (scripts/fetch-clients.sh) to fetch Debian 13's docker-cli, docker-buildx and docker-compose",
            dir.display()
        );
        let config = scratch.join("docker-config");
        let plugins = config.join("cli-plugins");
        fs::create_dir_all(&plugins).unwrap();
        for p in ["docker-buildx", "docker-compose"] {
            let from = dir.join("cli-plugins").join(p);
            assert!(from.is_file(), "no {} (run `make clients`)", from.display());
            std::os::unix::fs::symlink(&from, plugins.join(p)).unwrap();
        }
        Clients { docker, config }
    }

    /// Runs the trixie `docker ARGS` in `cwd` against the VM. The
    /// environment is a user's who set DOCKER_HOST only.
    fn docker(&self, vm: &Vm, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.docker);
        cmd.args(args).current_dir(cwd).env("DOCKER_HOST", &vm.docker_host).env("DOCKER_CONFIG", &self.config);
        for var in ["DOCKER_BUILDKIT", "BUILDX_BUILDER", "DOCKER_CONTEXT", "COMPOSE_DOCKER_CLI_BUILD", "BUILDKIT_PROGRESS"] {
            cmd.env_remove(var);
        }
        let out = run_with_input(&mut cmd, None, Duration::from_secs(900), &format!("docker {}", args.join(" ")));
        eprintln!("$ docker {}\n{}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Like [`Clients::docker`], and fails the test unless it succeeds; returns stdout and stderr.
    fn docker_ok(&self, vm: &Vm, cwd: &Path, args: &[&str]) -> String {
        let out = self.docker(vm, cwd, args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "docker {} failed ({}):\n{text}", args.join(" "), out.status);
        text
    }
}

/// Boots a VM and loads the offline base image `skiff-test/busybox`.
fn boot_with_base(scratch: &Scratch, clients: &Clients) -> Vm {
    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    let vm = Vm::boot(&scratch.0);
    clients.docker_ok(&vm, &scratch.0, &["load", "-i", image.to_str().unwrap()]);
    vm
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn docker_build_then_run_and_buildx_build_load() {
    let scratch = Scratch::new("build-first");
    let clients = Clients::new(&scratch.0);
    let vm = boot_with_base(&scratch, &clients);

    // Docker's getting-started shape, `# syntax` line included.
    let app = scratch.0.join("app");
    write(&app.join("Dockerfile"), "# syntax=docker/dockerfile:1\nFROM skiff-test/busybox\nCOPY hello.txt /hello.txt\nRUN echo built > /built\nCMD [\"sh\", \"-c\", \"cat /hello.txt /built\"]\n");
    write(&app.join("hello.txt"), "hello from the context\n");

    // `docker build` goes to buildx (the plugin is there), whose progress shows the steps.
    let built = clients.docker_ok(&vm, &app, &["build", "--progress=plain", "-t", "app", "."]);
    assert!(built.contains("RUN echo built"), "the steps are in buildx's progress:\n{built}");
    let ran = clients.docker_ok(&vm, &app, &["run", "--rm", "app"]);
    assert_eq!(ran.trim(), "hello from the context\nbuilt", "the built image runs");

    // skiff-buildkit's socket is the user's alone, like the engine's.
    let mode = fs::metadata(vm.dir.join("buildkit.sock")).expect("skiff run started skiff-buildkit").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "buildkit.sock is private");

    // buildx kept the docker driver: no docker-container builder, no BuildKit image pulled.
    let builders = clients.docker_ok(&vm, &app, &["buildx", "ls"]);
    assert!(!builders.contains("docker-container"), "buildx fell back to a docker-container builder:\n{builders}");
    let inspect = clients.docker_ok(&vm, &app, &["buildx", "inspect"]);
    assert!(inspect.contains("Driver:") && inspect.lines().any(|l| l.split_whitespace().eq(["Driver:", "docker"])), "{inspect}");

    // `docker buildx build --load`: the image is in the engine, and runs.
    write(&app.join("hello.txt"), "hello again\n");
    clients.docker_ok(&vm, &app, &["buildx", "build", "--load", "-t", "app2", "."]);
    let ran = clients.docker_ok(&vm, &app, &["run", "--rm", "app2"]);
    assert_eq!(ran.trim(), "hello again\nbuilt");
    let images = clients.docker_ok(&vm, &app, &["images", "--format", "{{.Repository}}"]);
    assert!(images.lines().any(|l| l.ends_with("app2")), "{images}");
    assert!(!images.contains("moby/buildkit"), "no BuildKit image was pulled:\n{images}");
    vm.shutdown();
}

#[test]
fn a_project_with_stages_args_a_dockerfile_elsewhere_an_ignore_file_and_a_cache_mount() {
    let scratch = Scratch::new("build-project");
    let clients = Clients::new(&scratch.0);
    let vm = boot_with_base(&scratch, &clients);

    let proj = scratch.0.join("proj");
    // The Dockerfile outside the context (`-f ../build/App.Dockerfile`).
    write(&proj.join("build/App.Dockerfile"), r#"# syntax=docker/dockerfile:1
FROM skiff-test/busybox AS builder
ARG GREETING=unset
RUN --mount=type=cache,target=/cache echo run >> /cache/runs && wc -l < /cache/runs > /runs
RUN echo "$GREETING" > /greeting
COPY . /src

FROM skiff-test/busybox AS final
COPY --from=builder /greeting /runs /
COPY --from=builder /src /src
CMD ["sh", "-c", "cat /greeting; echo runs=$(cat /runs); ls -A /src"]

FROM final AS broken
RUN exit 9
"#);
    let ctx = proj.join("ctx");
    write(&ctx.join("keep.txt"), "kept\n");
    write(&ctx.join("secret.txt"), "never sent\n");
    write(&ctx.join("node_modules/big.js"), "never sent\n");
    write(&ctx.join(".dockerignore"), "secret.txt\nnode_modules\n");

    let args = ["build", "-f", "../build/App.Dockerfile", "--target", "final", "--build-arg", "GREETING=hello stages", "-t", "proj"];
    clients.docker_ok(&vm, &ctx, &[&args[..], &["."]].concat());
    let ran = clients.docker_ok(&vm, &ctx, &["run", "--rm", "proj"]);
    let lines: Vec<&str> = ran.lines().collect();
    assert_eq!(lines.first(), Some(&"hello stages"), "--build-arg reached the stage:\n{ran}");
    assert_eq!(lines.get(1), Some(&"runs=1"), "{ran}");
    let files: Vec<&str> = lines.iter().skip(2).copied().collect();
    assert!(files.contains(&"keep.txt"), "the context was copied:\n{ran}");
    assert!(!files.contains(&"secret.txt") && !files.contains(&"node_modules"), ".dockerignore kept files out:\n{ran}");
    assert!(!files.iter().any(|f| f.contains("Dockerfile")), "the Dockerfile from elsewhere is not in the context:\n{ran}");

    // Rebuilt without the layer cache: the RUN runs again, and the cache mount kept its file.
    clients.docker_ok(&vm, &ctx, &[&args[..], &["--no-cache", "."]].concat());
    let ran = clients.docker_ok(&vm, &ctx, &["run", "--rm", "proj"]);
    assert!(ran.lines().any(|l| l == "runs=2"), "RUN --mount=type=cache kept /cache between builds:\n{ran}");
    vm.shutdown();
}

#[test]
fn a_failing_step_is_reported_by_name_and_leaves_no_image() {
    let scratch = Scratch::new("build-fail");
    let clients = Clients::new(&scratch.0);
    let vm = boot_with_base(&scratch, &clients);

    let app = scratch.0.join("app");
    write(&app.join("Dockerfile"), "FROM skiff-test/busybox\nRUN echo fine\nRUN echo about to fail && exit 3\nRUN echo never\n");
    let out = clients.docker(&vm, &app, &["build", "-t", "broken", "."]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a failing RUN fails the build:\n{text}");
    let error = text.lines().filter(|l| l.contains("ERROR")).collect::<Vec<_>>().join("\n");
    assert!(error.contains("RUN echo about to fail && exit 3"), "the error names the failing step:\n{text}");
    assert!(!text.contains("docker-container"), "{text}");
    assert!(!clients.docker(&vm, &app, &["image", "inspect", "broken"]).status.success(), "no image named broken");
    vm.shutdown();
}

#[test]
fn compose_up_build_builds_and_runs_the_service() {
    let scratch = Scratch::new("build-compose");
    let clients = Clients::new(&scratch.0);
    let vm = boot_with_base(&scratch, &clients);

    let proj = scratch.0.join("storytime");
    write(&proj.join("web/Dockerfile"), "FROM skiff-test/busybox\nARG WORD\nRUN echo \"compose built $WORD\" > /msg\nCMD [\"cat\", \"/msg\"]\n");
    write(&proj.join("compose.yaml"), "services:\n  web:\n    build:\n      context: web\n      args:\n        WORD: today\n");
    let up = clients.docker_ok(&vm, &proj, &["compose", "up", "--build", "--exit-code-from", "web"]);
    assert!(up.contains("compose built today"), "the built service ran:\n{up}");
    clients.docker_ok(&vm, &proj, &["image", "inspect", "storytime-web"]);
    clients.docker_ok(&vm, &proj, &["compose", "down"]);
    vm.shutdown();
}
