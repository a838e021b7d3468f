//! Connecting to PostgreSQL, creating the default database, and migrations.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{
    Connection as _, Executor as _, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// The migrations compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Where the service looks when no `DATABASE_URL` is given.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/stacksnap";

/// Opens a pool on `url`, or on the local default database (created when missing).
///
/// # Errors
/// The URL does not parse, the server is unreachable, or the default database cannot be created.
pub async fn connect(given: Option<&str>, max_connections: u32) -> anyhow::Result<PgPool> {
    let url = given.unwrap_or(DEFAULT_DATABASE_URL);
    if let Some(unknown) = unknown_parameters(url).first() {
        // sqlx would only warn, quoting the value: a misspelt `password` in the log.
        anyhow::bail!(
            "DATABASE_URL has an unknown parameter {unknown:?} (its value is not shown); \
             known: {}",
            KNOWN_PARAMETERS.join(", ")
        );
    }
    let options: PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    if given.is_none() {
        create_database_if_missing(&options).await?;
    }
    let target = describe(&options);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {target}"))
}

/// The query parameters sqlx's PostgreSQL driver reads (`options[name]` too).
const KNOWN_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The names of the query parameters of `url` that sqlx would ignore.
fn unknown_parameters(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, _)| key.into_owned())
        .filter(|key| {
            !(KNOWN_PARAMETERS.contains(&key.as_str())
                || key.starts_with("options[") && key.ends_with(']'))
        })
        .collect()
}

/// `host:port/database`, never the password.
pub fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(default)")
    )
}

async fn create_database_if_missing(options: &PgConnectOptions) -> anyhow::Result<()> {
    let database = options.get_database().unwrap_or("stacksnap").to_owned();
    let admin = options.clone().database("postgres");
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", describe(&admin)))?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&database)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // Identifiers cannot be bound; the name is ours, quoted for safety.
        let sql = format!("create database \"{}\"", database.replace('"', "\"\""));
        match conn.execute(sqlx::AssertSqlSafe(sql)).await {
            Ok(_) => tracing::info!(database, "created database"),
            // Another replica created it first.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).context(format!("cannot create database {database}")),
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// True when every migration compiled into this binary has been applied successfully.
///
/// # Errors
/// The database cannot be queried.
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let table_exists: bool =
        sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
            .fetch_one(pool)
            .await?;
    if !table_exists {
        return Ok(false);
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| applied.contains(&m.version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_sqlx_reads_are_known() {
        let url = "postgres://u:p@db/x?sslmode=require&application_name=stacksnap&options[search_path]=s&password=p";
        assert!(unknown_parameters(url).is_empty());
        assert!(unknown_parameters(DEFAULT_DATABASE_URL).is_empty());
    }

    #[test]
    fn a_misspelt_parameter_is_named_without_its_value() {
        assert_eq!(
            unknown_parameters("postgres://u@db/x?sslmode=require&pasword=hunter2"),
            ["pasword"]
        );
    }

    #[tokio::test]
    async fn connecting_with_an_unknown_parameter_fails_without_quoting_its_value() {
        let error = connect(Some("postgres://u@127.0.0.1:1/x?pasword=hunter2"), 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"pasword\""), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
