//! `stacksnap client`: a thin client of the HTTP API for pipelines and people.
//! It runs no engine and touches no database: every command is one or a few
//! API calls, answered as tables (or JSON with `--json`) with an exit code a
//! pipeline can act on ([`error::Exit`]).

pub mod api;
pub mod args;
pub mod auth;
pub mod error;
pub mod follow;
pub mod output;

use std::process::ExitCode;

use serde_json::{Value, json};
use tokio::time::Instant;

use self::{
    api::Api,
    args::{
        ClientArgs, ClientCommand, CreateSnapshot, JobCommand, PolicyCommand, SnapshotCommand,
        SnapshotsOnDelete,
    },
    error::{ClientError, Exit},
};

/// Runs a client command and says how it ended.
pub async fn run(args: ClientArgs) -> ExitCode {
    let exit = match execute(args).await {
        Ok(exit) => exit,
        Err(error) => {
            eprintln!("{}", error.report());
            error.exit()
        }
    };
    exit.into()
}

async fn execute(args: ClientArgs) -> Result<Exit, ClientError> {
    let api = Api::new(&args.url, auth::token().await?)?;
    let json = args.json;
    match args.command {
        ClientCommand::Snapshot(SnapshotCommand::Create(create)) => {
            create_snapshot(&api, create, json).await
        }
        ClientCommand::Job(JobCommand::Get { id }) => {
            let job = api.get_job(&id, None).await?.body;
            show(&job, json, output::job);
            Ok(Exit::Done)
        }
        ClientCommand::Job(JobCommand::Wait { id, wait }) => {
            let deadline = Instant::now() + wait.as_std();
            let job = api.get_job(&id, None).await?.body;
            eprintln!("job {id}: {}", output::text(&job["status"]));
            let job = follow::until_ended(&api, job, deadline).await?;
            Ok(finish(&job, json, &wait.to_string()))
        }
        ClientCommand::Policy(command) => policy(&api, command, json).await,
        ClientCommand::Status { all_projects } => {
            let status = api.status(all_projects).await?.body;
            show(&status, json, output::status);
            Ok(Exit::Done)
        }
    }
}

async fn policy(api: &Api, command: PolicyCommand, json: bool) -> Result<Exit, ClientError> {
    match command {
        PolicyCommand::List { all_projects } => {
            let items = api.list_policies(all_projects).await?;
            if json {
                print_json(&json!({ "items": items }));
            } else {
                print!("{}", output::policies(&items));
            }
        }
        PolicyCommand::Get { id } => show(&api.get_policy(&id).await?.body, json, output::policy),
        PolicyCommand::Create { file } => {
            let body = read_policy(&file)?;
            show(&api.create_policy(&body).await?.body, json, output::policy);
        }
        PolicyCommand::Delete { id, snapshots } => {
            let snapshots = match snapshots {
                SnapshotsOnDelete::Keep => "keep",
                SnapshotsOnDelete::Delete => "delete",
            };
            api.delete_policy(&id, snapshots).await?;
            eprintln!("policy {id} deleted (snapshots: {snapshots})");
        }
        PolicyCommand::Run { id } => show(&api.run_policy(&id).await?.body, json, output::run),
    }
    Ok(Exit::Done)
}

/// `snapshot create`: one request (waiting within it when asked), then long
/// polls of the job until it ends or `--wait` runs out.
async fn create_snapshot(api: &Api, args: CreateSnapshot, json: bool) -> Result<Exit, ClientError> {
    let deadline = args.wait.as_ref().map(|w| Instant::now() + w.as_std());
    let (resource_type, resource_id) = match (&args.server, &args.volume) {
        (Some(server), _) => ("server", server),
        (None, Some(volume)) => ("volume", volume),
        (None, None) => {
            return Err(ClientError::Usage(
                "--server or --volume is required".into(),
            ));
        }
    };
    let mut body = json!({"resource_type": resource_type, "resource_id": resource_id});
    if let Some(name) = &args.name {
        body["name"] = name.as_str().into();
    }
    if let Some(age) = &args.if_older_than {
        body["if_older_than"] = age.to_string().into();
    }
    let first_wait = deadline.and_then(|d| follow::next_wait(d - Instant::now()));
    let job = api.create_snapshot(&body, first_wait).await?.body;
    let id = output::text(&job["id"]);
    if job["reused"] == Value::Bool(true) {
        eprintln!(
            "{resource_type} {resource_id}: reused job {id}, which ended {} (younger than {})",
            output::text(&job["finished_at"]),
            args.if_older_than
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        show(&job, json, output::job);
        return Ok(Exit::Done);
    }
    eprintln!(
        "{resource_type} {resource_id}: job {id} {}",
        output::text(&job["status"])
    );
    let (Some(deadline), Some(wait)) = (deadline, &args.wait) else {
        show(&job, json, output::job);
        return Ok(Exit::Done);
    };
    let job = follow::until_ended(api, job, deadline).await?;
    Ok(finish(&job, json, &wait.to_string()))
}

/// Shows a job that was waited for and says what its end means.
fn finish(job: &Value, json: bool, waited: &str) -> Exit {
    show(job, json, output::job);
    match follow::verdict(job) {
        Some(Exit::Done) => Exit::Done,
        Some(_) => {
            if let Some(line) = follow::failure_line(job) {
                eprintln!("{line}");
            }
            Exit::Failed
        }
        None => {
            eprintln!(
                "error: job {} is still {} after {waited}",
                output::text(&job["id"]),
                output::text(&job["status"])
            );
            Exit::WaitRanOut
        }
    }
}

/// Prints `value` as JSON (`--json`) or as `human` renders it.
fn show(value: &Value, json: bool, human: fn(&Value) -> String) {
    if json {
        print_json(value);
    } else {
        print!("{}", human(value));
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A policy document from a JSON or YAML file, or stdin for `-`.
fn read_policy(path: &std::path::Path) -> Result<Value, ClientError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| ClientError::Usage(format!("cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", path.display())))?
    };
    // JSON first: its errors name the line and column of a JSON document.
    serde_json::from_str(&text).or_else(|json_error| {
        yaml_serde::from_str::<Value>(&text).map_err(|_| {
            ClientError::Usage(format!(
                "{} is neither JSON ({json_error}) nor YAML",
                path.display()
            ))
        })
    })
}
