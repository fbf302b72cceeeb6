//! The `lifeline` binary: argument parsing and dispatch only.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Lifeline: disaster recovery for stateful Kubernetes workloads.
#[derive(Parser)]
#[command(name = "lifeline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole product in about a minute, on two simulated clusters (`make demo`).
    Demo(lifeline::cli::demo::DemoArgs),
    /// `kubectl lifeline …` (the same binary named `kubectl-lifeline` is a kubectl plugin).
    Kubectl(lifeline::cli::kubectl::PluginCli),
    /// Print the CustomResourceDefinitions as YAML (or write one file per CRD).
    Crd {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Work with a backup location directly, without a cluster.
    Repo {
        #[command(flatten)]
        common: lifeline::cli::repo::Common,
        #[command(subcommand)]
        command: Box<lifeline::cli::repo::RepoCommand>,
    },
    /// Run the operator: the BackupLocation, BackupPolicy, RestorePoint and RestorePlan controllers.
    Run(Box<lifeline::cli::run::RunArgs>),
    /// Data-path work inside a mover Job (`lifeline repo …` whose result goes to the
    /// container's termination message by default).
    Mover {
        #[command(flatten)]
        common: lifeline::cli::repo::Common,
        #[command(subcommand)]
        command: Box<lifeline::cli::repo::RepoCommand>,
    },
    /// The operator at scale on a simulated cluster (`make bench-operator`).
    #[command(hide = true)]
    BenchOperator(lifeline::cli::bench::BenchArgs),
    /// Run a simulated Kubernetes cluster in the foreground (for kubectl and trying Lifeline).
    Sim {
        /// API server port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Write a kubeconfig here once the server is ready.
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
        /// `full` runs every simulated controller; `bare` is a control plane with no
        /// nodes and no storage.
        #[arg(long, value_enum, default_value_t = lifeline::sim::Profile::Full)]
        profile: lifeline::sim::Profile,
        /// Keep volumes, snapshots and Pod logs here (default: a temporary directory,
        /// removed on exit).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Switch a simulated controller off (repeatable), to drive its step by hand.
        #[arg(long, value_enum, value_name = "CONTROLLER")]
        disable: Vec<lifeline::sim::Controller>,
        /// Require bearer tokens and enforce RBAC (the kubeconfig gets the admin token).
        #[arg(long)]
        rbac: bool,
        /// An image the node knows, as `REPOSITORY=PROGRAM` (repeatable): its containers
        /// without a `command` run PROGRAM with their `args`, and find it on `PATH`. For
        /// example `ghcr.io/lifeline-dr/lifeline=target/release/lifeline` runs the chart's
        /// operator from its Deployment.
        #[arg(long, value_name = "REPOSITORY=PROGRAM", value_parser = parse_image)]
        image: Vec<lifeline::sim::Image>,
    },
    /// Init container of a gated workload: wait until the operator has read the fencing
    /// markers and found that no other cluster took the workload over.
    FenceGate(lifeline::cli::gate::GateArgs),
    /// Check Lifeline manifests offline, as the API server and the controllers would.
    Validate {
        /// Files or directories of YAML manifests.
        #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
        files: Vec<PathBuf>,
    },
}

/// Raises the soft limit of open files to the hard one, as Go programs (restic among them)
/// do at start: a restore of many small files holds a few hundred to a thousand files
/// open while their content is on its way, and many shells and some container runtimes
/// start processes with a soft limit of 1,024 under a much higher hard one. Where the hard
/// limit itself is low, the restore sizes its batches to it (see `repo::restore`).
fn raise_open_files_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() -> ExitCode {
    // The data path's threads allocate megabyte buffers; two malloc arenas instead of one
    // per thread keep freed memory reusable (measured with `make bench`: lower peak RSS,
    // no loss of speed).
    // Buffers of 4 MiB and more (a large blob's, a long range read's) are mapped on their
    // own and returned the moment they are freed: glibc's default raises this threshold
    // to the largest buffer freed so far, after which such buffers stay in the arenas and
    // peak RSS drifts up by tens of MiB. Fixing it also fixes the arenas' trim threshold,
    // at 128 KiB by default, which trims and regrows them all the time: 8 MiB instead.
    // Measured with the `make bench` data: the full backup peaked at 124-127 MiB, now
    // 112-118 MiB, and the restore from S3 at 118-139 MiB, now 109-117 MiB, in the same time;
    // without the trim threshold the backup spent 0.5 s more system time.
    // SAFETY: mallopt is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
    // A write past the file-size limit (`ulimit -f`, a container's limit) fails with
    // EFBIG, reported as an error naming the file, instead of the signal killing the
    // process without a word (and without its JSON result).
    // SAFETY: setting a signal's disposition to "ignore" has no handler to be unsafe in.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    raise_open_files_limit();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Installed as `kubectl-lifeline`, kubectl runs it for `kubectl lifeline …`.
    let plugin =
        args.first().and_then(|a| std::path::Path::new(a).file_name()).is_some_and(|n| n == "kubectl-lifeline");
    if plugin {
        let cli = <lifeline::cli::kubectl::PluginCli as Parser>::parse_from(&args);
        return plugin_main(cli);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // `lifeline repo …` answers bad arguments with a JSON result like any failure.
        Err(e) if args.get(1).is_some_and(|a| a == "repo" || a == "mover") && e.use_stderr() => {
            return ExitCode::from(lifeline::cli::repo::argument_error(&args, &e.to_string()) as u8);
        }
        Err(e) => e.exit(),
    };
    // On a terminal, readable lines; otherwise (a Pod's log, a pipe) JSON lines only.
    // The demo reports what goes wrong in its own words; the API client's connection
    // errors (a lost cluster is part of the story) would only repeat them.
    let default = if matches!(cli.command, Command::Demo(_)) { "warn,kube_client=off" } else { "warn" };
    let filter = || tracing_subscriber::EnvFilter::try_from_env("LIFELINE_LOG").unwrap_or_else(|_| default.into());
    // LIFELINE_LOG_FORMAT (json or text) overrides the choice by terminal.
    let json = match std::env::var("LIFELINE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    if !json {
        tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).init();
    } else {
        tracing_subscriber::fmt().json().with_env_filter(filter()).with_writer(std::io::stderr).init();
    }
    let result = match cli.command {
        Command::Repo { common, command } => {
            return ExitCode::from(lifeline::cli::repo::run(*command, &common) as u8);
        }
        Command::Mover { mut common, command } => {
            if common.result_file.is_none() {
                common.result_file = Some(lifeline::mover::job::TERMINATION_LOG.into());
            }
            return ExitCode::from(lifeline::cli::repo::run(*command, &common) as u8);
        }
        Command::Demo(args) => lifeline::cli::demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::BenchOperator(args) => lifeline::cli::bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => lifeline::cli::run::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Sim { port, kubeconfig, profile, state_dir, disable, rbac, image } => {
            let opts = lifeline::sim::Options {
                port,
                profile,
                state_dir,
                disabled: disable,
                rbac,
                images: image,
                ..Default::default()
            };
            lifeline::cli::sim(opts, kubeconfig.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::FenceGate(args) => lifeline::cli::gate::run(args).map(|()| ExitCode::SUCCESS),
        Command::Kubectl(cli) => return plugin_main(cli),
        Command::Crd { dir } => lifeline::cli::crd(dir.as_deref()).map(|()| ExitCode::SUCCESS),
        Command::Validate { files } => lifeline::cli::manifests::validate(&files)
            .map(|rejected| if rejected == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn plugin_main(cli: lifeline::cli::kubectl::PluginCli) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFELINE_LOG").unwrap_or_else(|_| "error".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    lifeline::cli::kubectl::main(cli).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn parse_image(s: &str) -> Result<lifeline::sim::Image, String> {
    let (repo, program) = s.split_once('=').ok_or("expected REPOSITORY=PROGRAM")?;
    let program = std::fs::canonicalize(program).map_err(|e| format!("{program}: {e}"))?;
    if repo.is_empty() {
        return Err("the repository is empty".into());
    }
    Ok(lifeline::sim::Image::program(repo, &program))
}
