//! The command line of `stacksnap client`: what each subcommand takes. Usage
//! errors are clap's (exit code 2), including durations that do not parse.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use crate::domain::duration::HumanDuration;

/// What every client command takes (its help is `Command::Client`'s).
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The service's base URL.
    #[arg(
        long,
        env = "STACKSNAP_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,

    /// Print what the service answered as JSON on stdout, for machines.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// One-off snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Snapshot policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Jobs: one resource's snapshot.
    #[command(subcommand)]
    Job(JobCommand),
    /// What the caller's project looks like: policies by state, failures, missed runs.
    Status {
        /// Every project's (admin only).
        #[arg(long)]
        all_projects: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot one server or volume now, optionally waiting for it.
    Create(CreateSnapshot),
}

/// `snapshot create`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("resource").required(true).args(["server", "volume"])))]
pub struct CreateSnapshot {
    /// The server to snapshot.
    #[arg(long, value_name = "ID")]
    pub server: Option<String>,
    /// The volume to snapshot.
    #[arg(long, value_name = "ID")]
    pub volume: Option<String>,
    /// The snapshot's name (the job id is added to it).
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Wait for the job to end, at most this long (e.g. `30m`).
    #[arg(long, value_name = "DURATION")]
    pub wait: Option<HumanDuration>,
    /// Take none when the resource has a complete snapshot younger than this (e.g. `6h`).
    #[arg(long, value_name = "DURATION")]
    pub if_older_than: Option<HumanDuration>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List the policies of the token's project.
    List {
        /// Every project's (admin only).
        #[arg(long)]
        all_projects: bool,
    },
    /// Show one policy.
    Get { id: String },
    /// Create a policy from a JSON or YAML file (`-` reads stdin).
    Create {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a policy.
    Delete {
        id: String,
        /// What becomes of its snapshots.
        #[arg(long, value_enum, default_value_t = SnapshotsOnDelete::Keep)]
        snapshots: SnapshotsOnDelete,
    },
    /// Run a policy now.
    Run { id: String },
}

/// `--snapshots` of `policy delete`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SnapshotsOnDelete {
    Keep,
    Delete,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show one job.
    Get { id: String },
    /// Wait for a job to end; the exit code says how it ended.
    Wait {
        id: String,
        /// Wait at most this long (default `1h`).
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        wait: HumanDuration,
    },
}
