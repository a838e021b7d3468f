//! Settling the event feed: an event is readable once the sequencer has given
//! it a position (see `store::events`).

use sqlx::PgPool;
use stacksnap::store::events::sequence_events;

/// Numbers every committed event, so each one is readable: a sequencer pass
/// sees every transaction that committed before it starts.
pub async fn settled_events(pool: &PgPool) {
    sequence_events(pool).await.unwrap();
    let unpositioned: i64 = sqlx::query_scalar("select count(*) from event where position is null")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(unpositioned, 0, "committed events left unsequenced");
}
