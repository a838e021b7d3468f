//! The `event` table: the outbox that triggers on `policy`, `run`, `job` and
//! `snapshot` fill in the transaction of each change (migration `create_event`),
//! and the one way to read it, in commit-safe order.
//!
//! **Order.** Events are read by (`xact_id`, `seq`): the id of the transaction
//! that wrote them (`pg_current_xact_id()`), then the order they were written
//! in. Transaction ids are handed out when a transaction first writes, not when
//! it commits, so a transaction with a lower id may commit after one with a
//! higher id. A read therefore returns only events of transactions older than
//! its snapshot's `xmin`: every such transaction has ended (committed or rolled
//! back), and any transaction still running, or yet to write, has an id at or
//! above it. Everything before a reader's position is then final, and a reader
//! that resumes after its last position (a cursor, a webhook dispatcher's
//! bookmark) never misses an event that committed late. An event becomes
//! readable once every transaction that was running when it was written has
//! ended, so a long write transaction delays what is read after it (read-only
//! transactions hold no id and delay nothing).
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
    pub xact_id: i64,
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
        Position {
            xact_id: self.xact_id,
            seq: self.seq,
        }
    }
}

/// A place in read order: a reader resumes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub xact_id: i64,
    pub seq: i64,
}

impl Position {
    /// The position packed in 16 bytes, as the API's cursors carry ids.
    pub fn to_uuid(self) -> Uuid {
        Uuid::from_u64_pair(self.xact_id as u64, self.seq as u64)
    }

    /// The position [`Position::to_uuid`] packed.
    pub fn from_uuid(id: Uuid) -> Self {
        let (xact_id, seq) = id.as_u64_pair();
        Self {
            xact_id: xact_id as i64,
            seq: seq as i64,
        }
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

/// Reads up to `limit` events of `scope` after `after`, in read order (see the
/// module's documentation), only those of transactions that have all ended.
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
    let scope: Scope<'_> = scope.into();
    let (exact, prefix) = match filter.kind {
        None => (None, None),
        Some(KindFilter::Exactly(kind)) => (Some(kind.as_str()), None),
        Some(KindFilter::Prefix(prefix)) => (None, Some(prefix)),
    };
    // One statement: the horizon comes from the snapshot that reads the rows.
    sqlx::query_as::<_, Named<Event>>(
        "select event_id, xact_id, seq, kind, at, project_id, policy_id, run_id, job_id, \
             snapshot_id, actor, data \
         from event \
         where xact_id < (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint) \
           and ($1::text is null or project_id = $1) \
           and ($2::text is null or kind = $2) and ($3::text is null or starts_with(kind, $3)) \
           and ($4::uuid is null or policy_id = $4) and ($5::uuid is null or job_id = $5) \
           and ($6::timestamptz is null or at >= $6) \
           and ($7::bigint is null or (xact_id, seq) > ($7, $8)) \
         order by xact_id, seq limit $9",
    )
    .bind(scope.project())
    .bind(exact)
    .bind(prefix)
    .bind(filter.policy_id)
    .bind(filter.job_id)
    .bind(filter.since)
    .bind(after.map(|p| p.xact_id))
    .bind(after.map_or(0, |p| p.seq))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map(row::values)
}

/// The position a new reader starts after to get only what is not readable
/// yet: everything before it has been readable, so a webhook made now starts here.
///
/// # Errors
/// The query fails.
pub async fn horizon(pool: &PgPool) -> Result<Position, sqlx::Error> {
    let xact_id: i64 =
        sqlx::query_scalar("select pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(pool)
            .await?;
    Ok(Position { xact_id, seq: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_survives_its_packing_and_keeps_its_order() {
        let positions = [
            Position { xact_id: 0, seq: 0 },
            Position {
                xact_id: 741,
                seq: 9,
            },
            Position {
                xact_id: 741,
                seq: 10,
            },
            Position {
                xact_id: 742,
                seq: 1,
            },
            Position {
                xact_id: i64::MAX,
                seq: i64::MAX,
            },
        ];
        for pair in positions.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_uuid() < pair[1].to_uuid());
        }
        for p in positions {
            assert_eq!(Position::from_uuid(p.to_uuid()), p);
        }
    }
}
