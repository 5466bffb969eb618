//! `skiff`: the host side of the Skiff appliance.
//!
//! `skiff run` boots the ISO in QEMU and serves the engine on a local unix
//! socket (and the containers' published ports on localhost); `skiff bridge`
//! only bridges that socket (and the ports) to a guest started by
//! any other hypervisor; `skiff stop` presses the VM's power button;
//! `skiff logs` and `skiff shell` use the guest's control port; `skiff ports`
//! lists the published ports forwarded to the host.

mod bridge;
mod control;
mod guest;
mod guestcfg;
mod ports;
mod process;
mod qemu;
mod qmp;
mod run;
mod secret;
mod shares;
mod state;
mod vsockdev;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use skiff_proto::DEFAULT_ENGINE_PORT;

#[derive(Parser)]
#[command(name = "skiff", version, about = "Boot the Skiff appliance and reach its container engine over vsock")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the ISO headless in QEMU and serve the engine on DIR/docker.sock.
    Run(run::RunOptions),
    /// Bridge a local unix socket to the guest's engine port.
    Bridge(BridgeArgs),
    /// Ask a VM started by `skiff run` to shut down (ACPI power button).
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
        guest: control::GuestArgs,
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
    },
    /// Open a root shell in the guest (busybox sh), over vsock.
    Shell {
        #[command(flatten)]
        guest: control::GuestArgs,
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
    /// Bind published ports on every interface, not only loopback.
    #[arg(long)]
    ports_all_interfaces: bool,
    /// A private folder for the port listing `skiff ports --dir DIR` prints.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    state::private_umask();
    let result = match Cli::parse().command {
        Command::Run(opts) => run::run(&opts),
        Command::Bridge(args) => bridge(args),
        Command::Stop { dir } => run::stop(&dir),
        Command::Ports { dir } => state::StateDir::existing(&dir).and_then(|s| ports::list(&s.ports())),
        Command::Logs { guest, follow } => control::logs(&guest, follow),
        Command::Shell { guest, command, tty } => match control::shell(&guest, command, tty) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
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

/// `skiff bridge`: serves a guest started by any hypervisor on a socket.
fn bridge(args: BridgeArgs) -> std::io::Result<()> {
    let addr = match (args.cid, args.uds, args.unix) {
        (Some(cid), _, _) => bridge::Addr::Cid(cid),
        (None, Some(uds), _) => bridge::Addr::Uds(uds),
        (None, None, Some(unix)) => bridge::Addr::Unix(unix),
        (None, None, None) => unreachable!("clap requires --cid, --uds or --unix"),
    };
    let plain_unix = matches!(addr, bridge::Addr::Unix(_));
    let mut target = bridge::Target::new(addr);
    target.secret = args.secret_file.as_deref().map(secret::read).transpose()?;
    let status = args.dir.as_deref().map(state::StateDir::create).transpose()?;
    let listener = bridge::bind(&args.listen)?;
    eprintln!("skiff: bridging {} to {}", args.listen.display(), target.describe(args.port));
    // A plain unix relay reaches an engine socket, not the guest's ports.
    if !args.no_ports && !plain_unix {
        ports::Ports::spawn(target.clone(), args.ports_all_interfaces, status.map(|s| s.ports()));
    }
    println!("export DOCKER_HOST=unix://{}", args.listen.display());
    bridge::serve(listener, target, args.port)
}
