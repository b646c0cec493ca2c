//! `fanline-bench`: an open-loop WebSocket fan-out load generator for fanline and its peers.
//!
//! ```text
//! args.rs      command line, validation, bounds
//! client.rs    one task per WebSocket connection: subscribe, record latency and seqs
//! publisher.rs open-loop schedule, keep-alive HTTP publisher threads
//! procstat.rs  server CPU and RSS from /proc
//! report.rs    JSON result with the V2 histogram, merge, table, compare (markdown)
//! ```
//!
//! A run: connect `--conns` clients (at most `--connect-concurrency` handshakes at once), wait
//! `--settle`, read the server's idle RSS, publish `rate × duration` events open-loop, keep
//! reading for up to `--drain` seconds, then report. `--step-up` instead adds `--step`
//! connections at a time under a constant publish rate until p99 passes `--p99-bound-ms`.
//! Every phase is bounded; a kill-switch thread ends the process after `--hard-timeout`.

mod args;
mod client;
mod deflate;
mod procstat;
mod publisher;
mod report;
mod run;
mod shared;
mod sse;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Cmd};
use crate::report::{RunResult, compare_markdown};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Some(Cmd::Merge { files, out, label }) => merge(&files, out.as_deref(), label),
        Some(Cmd::Compare { files }) => compare(&files),
        None => run::main(cli.run),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fanline-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn merge(
    files: &[std::path::PathBuf],
    out: Option<&std::path::Path>,
    label: Option<String>,
) -> anyhow::Result<ExitCode> {
    let parts = files
        .iter()
        .map(|f| RunResult::load(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut m = RunResult::merge(&parts)?;
    if let Some(l) = label {
        m.label = l;
    }
    print!("{}", m.table());
    if let Some(out) = out {
        m.save(out)?;
    }
    Ok(if m.failed() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn compare(files: &[std::path::PathBuf]) -> anyhow::Result<ExitCode> {
    let rs = files
        .iter()
        .map(|f| RunResult::load(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    print!("{}", compare_markdown(&rs));
    Ok(ExitCode::SUCCESS)
}
