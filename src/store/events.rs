//! The `event` table: the outbox that triggers on `policy`, `run`, `job` and
//! `snapshot` fill in the transaction of each change (migration `create_event`),
//! and the one way to read it, in commit-safe order.
//!
//! **Order.** The triggers insert events with no position. A single ordered
//! writer, the sequencer ([`sequence_events`]), numbers the committed
//! unpositioned events in one transaction that first takes a transaction-level
//! advisory lock: two passes (two replicas, or a reader's pass and the engine's)
//! never number at once, so a position committed later is always larger than
//! every position committed before it. Readers read only positioned events, by
//! position, and a cursor holds the last position read: an event whose
//! transaction commits late simply gets a later position, so a reader paging by
//! cursor never misses it, and no transaction elsewhere on the server delays
//! anything. (The earlier rule, read only transaction ids below the snapshot's
//! `xmin`, stalled the whole feed behind any write transaction open on the
//! server, in any database.) Within one pass, events keep insertion order
//! (`seq`), so a transaction's events stay in the order it wrote them.
//!
//! The actor of a change is the transaction's `stacksnap.actor` setting: the
//! API's writes set it with [`act_as`]; unset, the triggers name the service
//! (`scheduler` or `engine`) or the row's author.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{
    Scope,
    row::{self, Keyed, Named},
};
use crate::domain::event::{EventKind, KindFilter};

/// A stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub event_id: Uuid,
    /// Its place in read order, given by the sequencer.
    pub position: i64,
    pub seq: i64,
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    pub project_id: String,
    pub policy_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub snapshot_id: Option<Uuid>,
    pub actor: String,
    pub data: Json<Value>,
}

impl Keyed for Event {
    const TABLE: &'static str = "event";
    const KEY: &'static str = "event_id";
}

impl Event {
    /// Where this event stands in read order.
    pub fn position(&self) -> Position {
        Position(self.position)
    }
}

/// A place in read order: a reader resumes after it. Positions start at 1, so
/// `Position(0)` is before every event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub i64);

impl Position {
    /// The position packed in 16 bytes, as the API's cursors carry ids.
    pub fn to_uuid(self) -> Uuid {
        Uuid::from_u64_pair(0, self.0 as u64)
    }

    /// The position [`Position::to_uuid`] packed.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id.as_u64_pair().1 as i64)
    }
}

/// What a reader wants besides its scope; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<KindFilter>,
    pub policy_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    /// Events at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// Names who makes the changes of the rest of this transaction (a Keystone
/// user id, or [`crate::domain::event::API_ACTOR`]); ends with the transaction.
///
/// # Errors
/// The query fails.
pub async fn act_as(conn: &mut PgConnection, actor: &str) -> Result<(), sqlx::Error> {
    sqlx::query("select set_config('stacksnap.actor', $1, true)")
        .bind(actor)
        .execute(conn)
        .await?;
    Ok(())
}

/// Taken by every sequencing pass for the rest of its transaction (so it is
/// released at commit, also behind a pooler in transaction mode).
pub const SEQUENCER_LOCK: i64 = 0x7365_7175_656e_6365; // "sequence"

/// Most events one sequencing transaction numbers; a pass loops over batches.
const SEQUENCE_BATCH: i64 = 5000;

/// The sequencer: gives the next positions to the committed events that have
/// none, in insertion order. Safe to run anywhere at any time (the engine's
/// task, a reader before it reads): passes are serialized by an advisory lock,
/// and a pass with nothing to do takes no lock. Returns how many it numbered.
///
/// # Errors
/// The database fails; nothing of the failed batch is numbered.
pub async fn sequence_events(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut numbered = 0;
    loop {
        // Only committed events are seen: one still being written waits for a
        // later pass without holding this one up.
        let pending: bool =
            sqlx::query_scalar("select exists (select 1 from event where position is null)")
                .fetch_one(pool)
                .await?;
        if !pending {
            return Ok(numbered);
        }
        let mut tx = pool.begin().await?;
        // A pass that stalls (its replica paused or cut off) must not hold every
        // reader and sequencer for the hours TCP takes to notice: the server ends
        // its idle transaction, and a waiter gives up and tries again later.
        sqlx::query(
            "select set_config('idle_in_transaction_session_timeout', '30s', true), \
                    set_config('lock_timeout', '30s', true)",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .execute(&mut *tx)
            .await?;
        // A statement of its own, after the lock: its snapshot sees what every
        // earlier pass committed, so it numbers after them.
        let n: i64 = sqlx::query_scalar(
            "with head as (select last_position from event_head), \
             pending as ( \
                 select event_id, row_number() over (order by seq) as n \
                 from event where position is null order by seq limit $1), \
             numbered as ( \
                 update event e set position = head.last_position + pending.n \
                 from head, pending where e.event_id = pending.event_id \
                 returning e.position), \
             moved as ( \
                 update event_head set last_position = (select max(position) from numbered) \
                 where exists (select 1 from numbered)) \
             select count(*) from numbered",
        )
        .bind(SEQUENCE_BATCH)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        numbered += n as u64;
        if n < SEQUENCE_BATCH {
            return Ok(numbered);
        }
    }
}

/// Reads up to `limit` events of `scope` after `after`, in read order (see the
/// module's documentation). Runs a sequencing pass first, so what has
/// committed is readable without waiting for the engine's sequencer.
///
/// # Errors
/// The query fails.
pub async fn list_events(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    filter: &EventFilter,
    after: Option<Position>,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    sequence_events(pool).await?;
    let scope: Scope<'_> = scope.into();
    let (exact, prefix) = match filter.kind {
        None => (None, None),
        Some(KindFilter::Exactly(kind)) => (Some(kind.as_str()), None),
        Some(KindFilter::Prefix(prefix)) => (None, Some(prefix)),
    };
    sqlx::query_as::<_, Named<Event>>(
        "select event_id, position, seq, kind, at, project_id, policy_id, run_id, job_id, \
             snapshot_id, actor, data \
         from event \
         where position > $7 \
           and ($1::text is null or project_id = $1) \
           and ($2::text is null or kind = $2) and ($3::text is null or starts_with(kind, $3)) \
           and ($4::uuid is null or policy_id = $4) and ($5::uuid is null or job_id = $5) \
           and ($6::timestamptz is null or at >= $6) \
         order by position limit $8",
    )
    .bind(scope.project())
    .bind(exact)
    .bind(prefix)
    .bind(filter.policy_id)
    .bind(filter.job_id)
    .bind(filter.since)
    .bind(after.unwrap_or_default().0)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map(row::values)
}

/// The position a new reader starts after to get only what comes later: the
/// highest position handed out, once what has committed is numbered. A webhook
/// made now starts here.
///
/// # Errors
/// The query fails.
pub async fn horizon(pool: &PgPool) -> Result<Position, sqlx::Error> {
    sequence_events(pool).await?;
    let last: i64 = sqlx::query_scalar("select last_position from event_head")
        .fetch_one(pool)
        .await?;
    Ok(Position(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_survives_its_packing_and_keeps_its_order() {
        let positions = [0, 1, 9, 10, 741, i64::MAX].map(Position);
        for pair in positions.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_uuid() < pair[1].to_uuid());
        }
        for p in positions {
            assert_eq!(Position::from_uuid(p.to_uuid()), p);
        }
    }
}
