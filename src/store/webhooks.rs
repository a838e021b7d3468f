//! The `webhook` and `webhook_delivery` tables: subscriptions, the cursor and
//! retry state of each, the lease that lets one replica at a time deliver it,
//! and the record of recent attempts.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    Scope,
    events::Position,
    row::{self, Keyed, Named},
};

/// Delivery attempts kept per subscription; older ones are dropped as new ones come.
pub const KEPT_DELIVERIES: i64 = 100;

/// A subscription as stored. Its `Debug` never shows the secret.
#[derive(Clone, sqlx::FromRow)]
pub struct Webhook {
    pub webhook_id: Uuid,
    pub project_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub cursor_position: i64,
    pub attempt: i32,
    pub failing_since: Option<DateTime<Utc>>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("webhook_id", &self.webhook_id)
            .field("project_id", &self.project_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"[redacted]")
            .field("cursor", &self.cursor())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Keyed for Webhook {
    const TABLE: &'static str = "webhook";
    const KEY: &'static str = "webhook_id";
}

impl Webhook {
    /// The position of the last event delivered (or given up on).
    pub fn cursor(&self) -> Position {
        Position(self.cursor_position)
    }
}

/// A new subscription, starting after `start`.
pub struct NewWebhook<'a> {
    pub project_id: &'a str,
    pub url: &'a str,
    pub events: &'a [String],
    pub secret: &'a str,
    pub created_by: Option<&'a str>,
    pub start: Position,
}

/// The columns of [`Webhook`].
macro_rules! columns {
    () => {
        "webhook_id, project_id, url, events, secret, created_at, created_by, \
         cursor_position, attempt, failing_since"
    };
}

/// Stores a new subscription.
///
/// # Errors
/// The query fails.
pub async fn insert_webhook(pool: &PgPool, new: &NewWebhook<'_>) -> Result<Webhook, sqlx::Error> {
    sqlx::query_as::<_, Named<Webhook>>(concat!(
        "insert into webhook (webhook_id, project_id, url, events, secret, created_by, \
             cursor_position) \
         values ($1, $2, $3, $4, $5, $6, $7) returning ",
        columns!(),
        " "
    ))
    .bind(Uuid::now_v7())
    .bind(new.project_id)
    .bind(new.url)
    .bind(new.events)
    .bind(new.secret)
    .bind(new.created_by)
    .bind(new.start.0)
    .fetch_one(pool)
    .await
    .map(Named::into_inner)
}

/// Reads one subscription in `scope`.
///
/// # Errors
/// The query fails.
pub async fn fetch_webhook(
    pool: &PgPool,
    scope: Scope<'_>,
    id: Uuid,
) -> Result<Option<Webhook>, sqlx::Error> {
    sqlx::query_as::<_, Named<Webhook>>(concat!(
        "select ",
        columns!(),
        " from webhook where webhook_id = $1 and ($2::text is null or project_id = $2)"
    ))
    .bind(id)
    .bind(scope.project())
    .fetch_optional(pool)
    .await
    .map(|r| r.map(Named::into_inner))
}

/// Lists subscriptions of `scope`, newest first, before the cursor id.
///
/// # Errors
/// The query fails.
pub async fn list_webhooks(
    pool: &PgPool,
    scope: Scope<'_>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Webhook>, sqlx::Error> {
    sqlx::query_as::<_, Named<Webhook>>(concat!(
        "select ",
        columns!(),
        " from webhook \
         where ($1::text is null or project_id = $1) and ($2::uuid is null or webhook_id < $2) \
         order by webhook_id desc limit $3"
    ))
    .bind(scope.project())
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map(row::values)
}

/// Deletes one subscription in `scope` (its deliveries go with it); false when there was none.
///
/// # Errors
/// The query fails.
pub async fn delete_webhook(
    pool: &PgPool,
    scope: Scope<'_>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "delete from webhook where webhook_id = $1 and ($2::text is null or project_id = $2)",
    )
    .bind(id)
    .bind(scope.project())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Leases one subscription that is due (not leased, or its lease ran out) to
/// `owner` for `lease`, none of the projects in `skip`; the row lock (SKIP
/// LOCKED) keeps two replicas from taking the same one.
///
/// # Errors
/// The query fails.
pub async fn claim_due(
    pool: &PgPool,
    owner: Uuid,
    lease: TimeDelta,
    skip: &[&str],
) -> Result<Option<Webhook>, sqlx::Error> {
    sqlx::query_as::<_, Named<Webhook>>(concat!(
        "update webhook set lease_owner = $1, lease_until = now() + $2 \
         where webhook_id = (select webhook_id from webhook \
                             where next_attempt_at <= now() \
                               and (lease_until is null or lease_until < now()) \
                               and project_id <> all($3) \
                             order by next_attempt_at limit 1 for update skip locked) \
         returning ",
        columns!(),
        " "
    ))
    .bind(owner)
    .bind(lease)
    .bind(skip)
    .fetch_optional(pool)
    .await
    .map(|r| r.map(Named::into_inner))
}

/// Extends a lease `owner` holds; false when it is no longer ours (or the subscription was deleted).
///
/// # Errors
/// The query fails.
pub async fn renew_lease(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    lease: TimeDelta,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update webhook set lease_until = now() + $3 where webhook_id = $1 and lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(lease)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Moves the cursor past `position` (delivered, given up on, or not wanted) and clears the retry state.
///
/// # Errors
/// The query fails.
pub async fn advance(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    position: Position,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update webhook set cursor_position = $3, attempt = 0, failing_since = null \
         where webhook_id = $1 and lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(position.0)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Records a failed attempt at the event after the cursor and releases the
/// lease until `retry_at`.
///
/// # Errors
/// The query fails.
pub async fn defer(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    attempt: i32,
    failing_since: DateTime<Utc>,
    retry_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update webhook set attempt = $3, failing_since = $4, next_attempt_at = $5, \
             lease_owner = null, lease_until = null \
         where webhook_id = $1 and lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(attempt)
    .bind(failing_since)
    .bind(retry_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives the lease back; the subscription is looked at again after `next_look`.
///
/// # Errors
/// The query fails.
pub async fn release(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    next_look: TimeDelta,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update webhook set next_attempt_at = now() + $3, lease_owner = null, lease_until = null \
         where webhook_id = $1 and lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(next_look)
    .execute(pool)
    .await?;
    Ok(())
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, serde::Serialize, utoipa::ToSchema)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[schema(example = "delivered")]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It did not; the event is tried again later.
    Failed,
    /// It did not, and the event had failed for the whole retry window: the subscription moved on.
    GaveUp,
}

/// One delivery attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub delivery_id: i64,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub kind: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub outcome: DeliveryOutcome,
    pub at: DateTime<Utc>,
}

/// What to record of an attempt.
#[derive(Debug)]
pub struct NewDelivery<'a> {
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub kind: &'a str,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    pub outcome: DeliveryOutcome,
}

/// Records an attempt, dropping the subscription's attempts beyond [`KEPT_DELIVERIES`].
///
/// # Errors
/// The query fails.
pub async fn record_delivery(pool: &PgPool, d: &NewDelivery<'_>) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "insert into webhook_delivery (webhook_id, event_id, kind, attempt, status_code, error, outcome) \
         select $1, $2, $3, $4, $5, $6, $7 where exists (select 1 from webhook where webhook_id = $1)",
    )
    .bind(d.webhook_id)
    .bind(d.event_id)
    .bind(d.kind)
    .bind(d.attempt)
    .bind(d.status_code)
    .bind(d.error)
    .bind(d.outcome)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "delete from webhook_delivery where webhook_id = $1 and delivery_id < \
             (select delivery_id from webhook_delivery where webhook_id = $1 \
              order by delivery_id desc offset $2 limit 1)",
    )
    .bind(d.webhook_id)
    .bind(KEPT_DELIVERIES - 1)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The most recent attempts of one subscription, newest first.
///
/// # Errors
/// The query fails.
pub async fn list_deliveries(
    pool: &PgPool,
    webhook_id: Uuid,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as::<_, Delivery>(
        "select delivery_id, webhook_id, event_id, kind, attempt, status_code, error, outcome, at \
         from webhook_delivery where webhook_id = $1 order by delivery_id desc limit $2",
    )
    .bind(webhook_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}
