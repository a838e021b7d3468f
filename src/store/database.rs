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
pub async fn connect(url: Option<&str>, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .unwrap_or(DEFAULT_DATABASE_URL)
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    if url.is_none() {
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
