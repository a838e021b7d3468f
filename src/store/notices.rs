//! LISTEN with reconnection, for the loops that NOTIFY only wakes sooner.

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgListener, PgNotification},
};
use tokio_util::sync::CancellationToken;

/// How long a lost LISTEN connection waits before it connects again.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);

/// Calls `on_notice` for every NOTIFY on `channels` until `shutdown`,
/// connecting again after a pause when the connection is lost. NOTIFY is only
/// a shortcut (a pooler in transaction mode drops it): callers stay correct
/// without it, by polling.
pub async fn listen(
    db: &PgPool,
    channels: &[&str],
    shutdown: &CancellationToken,
    mut on_notice: impl FnMut(&PgNotification),
) {
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(db).await?;
            listener.listen_all(channels.iter().copied()).await?;
            loop {
                on_notice(&listener.recv().await?);
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = listening => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, ?channels, "LISTEN connection lost; polling until it is back");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}
