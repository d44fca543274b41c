//! The `endotower` command line.

use crate::bench;
use crate::logging::{self, LogFormat};
use crate::tower::{start_simulators, Tower};
use crate::tower_config::{TowerConfig, DEFAULT_CONFIG};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use endotower_sim::Device;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "endotower",
    version,
    about = "Supervision runtime of an integrated endoscopy / laparoscopy tower"
)]
struct Cli {
    /// Log output format.
    #[arg(long, value_enum, default_value = "human", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the tower (with in-process simulators when `sim.embedded = true`).
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Stop by itself after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration_s: Option<f64>,
    },
    /// Validate a config file and exit.
    CheckConfig { file: PathBuf },
    /// Run only the device simulators, on the device addresses of the config.
    Sim {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run a benchmark: interlock.
    Bench {
        name: String,
        /// A shorter run (under 60 s).
        #[arg(long)]
        quick: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the Modbus register maps as Markdown.
    Registers,
}

fn load(path: &PathBuf) -> Result<TowerConfig> {
    TowerConfig::load(path).map_err(anyhow::Error::from)
}

async fn wait_stop(duration_s: Option<f64>) {
    match duration_s {
        Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
        None => {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!("cannot wait for Ctrl-C: {e}; stopping");
            }
        }
    }
}

async fn run(config: PathBuf, duration_s: Option<f64>) -> Result<()> {
    let cfg = load(&config)?;
    let tower = Tower::start(cfg).await.context("starting the tower")?;
    let watch_root = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if !tower.root_running() {
                tracing::error!("control plane stopped (root supervisor meltdown); the safety island keeps the devices in the safe state; Ctrl-C to stop");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = wait_stop(duration_s) => {}
        () = watch_root => {}
    }
    tower.shutdown().await;
    Ok(())
}

async fn sim(config: PathBuf) -> Result<()> {
    let mut cfg = load(&config)?;
    let host = start_simulators(&mut cfg).context("starting the simulators")?;
    for dev in Device::ALL {
        let addrs: Vec<String> = host.tcp_addrs(dev).iter().map(|a| a.to_string()).collect();
        tracing::info!(device = dev.name(), unit = dev.default_unit(), addrs = ?addrs, "simulator listening");
    }
    wait_stop(None).await;
    host.stop();
    Ok(())
}

fn bench_cmd(name: &str, quick: bool, json: bool, config: PathBuf) -> Result<()> {
    let cfg = load(&config)?;
    let report = match name {
        "interlock" => bench::interlock::run(cfg, quick)?,
        other => bail!("unknown benchmark {other:?}; available: interlock"),
    };
    report.print(json);
    Ok(())
}

fn dispatch(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    match cli.cmd {
        Cmd::Run { config, duration_s } => rt.block_on(run(config, duration_s)),
        Cmd::CheckConfig { file } => {
            load(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Cmd::Sim { config } => rt.block_on(sim(config)),
        Cmd::Bench {
            name,
            quick,
            json,
            config,
        } => bench_cmd(&name, quick, json, config),
        Cmd::Registers => {
            print!("{}", endotower_actors::registers::markdown());
            Ok(())
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A benchmark prints its report; its per-event logs would drown it.
    let default_filter = if matches!(cli.cmd, Cmd::Bench { .. }) {
        "warn,endotower_actors::events=off"
    } else {
        "info"
    };
    logging::init(cli.log_format, default_filter);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
