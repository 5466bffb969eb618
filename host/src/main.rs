//! `skiff`: the host side of the Skiff appliance.
//!
//! `skiff start` boots the ISO in QEMU in the background (`skiff run` in
//! the foreground) and serves the engine on a local unix socket (and the
//! containers' published ports on localhost); `skiff status`, `skiff stop`
//! and `skiff rollback` manage that VM; `skiff bridge` only bridges that
//! socket (and the ports) to a guest started by any other hypervisor;
//! `skiff logs` and `skiff shell` use the guest's control port; `skiff
//! ports` lists the published ports forwarded to the host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use skiff::{commands, guest, state, vm};
use skiff_proto::DEFAULT_ENGINE_PORT;

#[derive(Parser)]
#[command(name = "skiff", version, about = "Boot the Skiff appliance and reach its container engine over vsock")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the VM in the background; returns once the engine answers.
    /// Memory, CPUs, disk size, shares, --balloon, --discard and --watch are
    /// remembered for the next start.
    Start(commands::run::RunOptions),
    /// Boot the ISO headless in QEMU in the foreground and serve the engine on DIR/docker.sock.
    Run(commands::run::RunOptions),
    /// Whether the VM runs, its ISO, uptime, engine version, forwarded
    /// ports, shares, data disk use and guest memory.
    Status {
        /// State folder of the VM.
        #[arg(long, env = "SKIFF_DIR", default_value_os_t = state::default_dir())]
        dir: PathBuf,
    },
    /// Stop the VM if it runs and start the previous ISO with the same data disk.
    Rollback(commands::run::RunOptions),
    /// Bridge a local unix socket to the guest's engine port.
    Bridge(BridgeArgs),
    /// Shut the VM down cleanly (ACPI power button) and wait for it to exit.
    Stop {
        /// State folder of the VM.
        #[arg(long, env = "SKIFF_DIR", default_value_os_t = state::default_dir())]
        dir: PathBuf,
    },
    /// List the published ports forwarded to the host, with each
    /// listener's state (listening, or why it failed).
    Ports {
        /// State folder of the VM (or the `--dir` of `skiff bridge`).
        #[arg(long, env = "SKIFF_DIR", default_value_os_t = state::default_dir())]
        dir: PathBuf,
    },
    /// Print the guest's log (the init's and the engine's), over vsock.
    Logs {
        #[command(flatten)]
        guest: guest::control::GuestArgs,
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
    },
    /// Open a root shell in the guest (busybox sh), over vsock.
    Shell {
        #[command(flatten)]
        guest: guest::control::GuestArgs,
        /// Run this command with `sh -c` instead of an interactive shell.
        #[arg(short = 'c', long)]
        command: Option<String>,
        /// Give the command a terminal even with -c (when stdin is one).
        #[arg(short = 't', long)]
        tty: bool,
    },
}

#[derive(Args)]
struct BridgeArgs {
    /// Local unix socket to create (point DOCKER_HOST at it).
    #[arg(long)]
    listen: PathBuf,
    /// Guest context id, for kernel AF_VSOCK (vhost-vsock, Hyper-V, VMware).
    #[arg(long, conflicts_with_all = ["uds", "unix"], required_unless_present_any = ["uds", "unix"])]
    cid: Option<u32>,
    /// Hybrid-vsock unix socket (Firecracker, Cloud Hypervisor, vhost-device-vsock).
    #[arg(long, conflicts_with = "unix")]
    uds: Option<PathBuf>,
    /// A plain unix socket to relay to as is (e.g. another bridge's socket);
    /// the port is not used.
    #[arg(long)]
    unix: Option<PathBuf>,
    /// Guest vsock port of the engine.
    #[arg(long, default_value_t = DEFAULT_ENGINE_PORT)]
    port: u32,
    /// A file holding the VM's secret (64 hex digits), the same value as the
    /// guest's `secret` setting; every connection presents it.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Do not forward the guest's published ports.
    #[arg(long)]
    no_ports: bool,
    /// Bind published ports on every interface, not only loopback
    /// (also SKIFF_PORTS_ALL_INTERFACES=1).
    #[arg(long, env = "SKIFF_PORTS_ALL_INTERFACES")]
    ports_all_interfaces: bool,
    #[command(flatten)]
    port_limits: guest::ports::LimitOptions,
    /// A private folder for the port listing `skiff ports --dir DIR` prints.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// `skiff start` and `skiff rollback`: the remembered settings merged with
/// this command's flags, then a detached `skiff run`.
fn start(opts: &commands::run::RunOptions, matches: Option<&ArgMatches>, rollback: bool) -> Result<(), commands::start_error::StartError> {
    let state = state::StateDir::create(&opts.dir)?;
    let given = |id: &str| matches.and_then(|m| m.value_source(id)).is_some_and(|s| s != ValueSource::DefaultValue);
    let stored = commands::remembered::load(&state.settings());
    // Share paths are remembered absolute: the next start may run elsewhere.
    let cwd = std::env::current_dir()?;
    let mut absolute = opts.clone();
    absolute.shares.shares = opts.shares.shares.iter().map(|p| vm::shares::absolute(p, &cwd)).collect();
    let (merged, extra) = commands::remembered::merge(&stored, &absolute, given);
    // The arguments after the subcommand, passed on to `skiff run`.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = if rollback { "rollback" } else { "start" };
    let at = argv.iter().position(|a| a == name).map_or(argv.len(), |i| i + 1);
    let mut args = commands::lifecycle::without_iso(&argv[at..]);
    args.extend(extra.into_iter().map(Into::into));
    if !given("dir") {
        args.extend(["--dir".into(), state.path().as_os_str().to_owned()]);
    }
    if rollback {
        return commands::lifecycle::rollback(&state, &args);
    }
    if state::pidfile::running(&state).is_none() && merged != stored {
        state::settings::save(&state.settings(), &merged)?;
    }
    let plan = commands::lifecycle::StartPlan { args, iso: given("iso").then(|| opts.iso.clone()), default_iso: opts.iso.clone() };
    commands::lifecycle::start(&state, &plan)
}

fn main() -> ExitCode {
    state::private_umask();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Every command's error, typed where a caller decides on it, is printed here and only here.
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Start(opts) => start(&opts, matches.subcommand_matches("start"), false).map_err(Into::into),
        Command::Rollback(opts) => start(&opts, matches.subcommand_matches("rollback"), true).map_err(Into::into),
        Command::Status { dir } => existing(&dir).and_then(|s| Ok(commands::lifecycle::status(&s)?)),
        Command::Run(opts) => commands::run::run(&opts).map_err(Into::into),
        Command::Bridge(args) => bridge(args).map_err(Into::into),
        Command::Stop { dir } => existing(&dir).and_then(|s| Ok(commands::lifecycle::stop(&s)?)),
        Command::Ports { dir } => existing(&dir).and_then(|s| Ok(guest::ports::list(&s.ports())?)),
        Command::Logs { guest, follow } => guest::control::logs(&guest, follow).map_err(Into::into),
        Command::Shell { guest, command, tty } => match guest::control::shell(&guest, command, tty) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff: {e}");
            ExitCode::FAILURE
        }
    }
}

fn existing(dir: &std::path::Path) -> Result<state::StateDir, Box<dyn std::error::Error>> {
    Ok(state::StateDir::existing(dir)?)
}

/// `skiff bridge`: serves a guest started by any hypervisor on a socket.
fn bridge(args: BridgeArgs) -> std::io::Result<()> {
    let addr = match (args.cid, args.uds, args.unix) {
        (Some(cid), _, _) => guest::bridge::Addr::Cid(cid),
        (None, Some(uds), _) => guest::bridge::Addr::Uds(uds),
        (None, None, Some(unix)) => guest::bridge::Addr::Unix(unix),
        (None, None, None) => unreachable!("clap requires --cid, --uds or --unix"),
    };
    let plain_unix = matches!(addr, guest::bridge::Addr::Unix(_));
    let mut target = guest::bridge::Target::new(addr);
    target.secret = args.secret_file.as_deref().map(state::secret::read).transpose()?;
    let status = args.dir.as_deref().map(state::StateDir::create).transpose()?;
    let listener = guest::bridge::bind(&args.listen)?;
    // skiff-buildkit's socket: in the state folder, else beside the listening one (0600 either way).
    let build_sock = status.as_ref().map(|s| s.build_sock()).unwrap_or_else(|| args.listen.with_extension("buildkit.sock"));
    let builder = vm::buildkit::Helper::start(&build_sock, &args.listen);
    eprintln!("skiff: bridging {} to {}", args.listen.display(), target.describe(args.port));
    // A plain unix relay reaches an engine socket, not the guest's ports.
    if !args.no_ports && !plain_unix {
        guest::ports::Ports::spawn(target.clone(), args.ports_all_interfaces, args.port_limits.limits(), status.map(|s| s.ports()))?;
    }
    println!("export DOCKER_HOST=unix://{}", args.listen.display());
    guest::bridge::serve(listener, target, args.port, builder.as_ref().map(|h| h.socket().to_path_buf()))
}
