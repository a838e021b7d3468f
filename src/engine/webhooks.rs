//! The webhook dispatcher: one supervised task that leases due subscriptions
//! (one replica at a time each, `store::webhooks::claim_due`) and delivers each
//! in its own tokio task, so a receiver that hangs holds one slot of
//! [`WebhookSettings::concurrency`] for at most the request timeout and never
//! the engine's other loops. One project's subscriptions take at most
//! [`WebhookSettings::per_project`] of those slots, so a project with many
//! hanging receivers cannot hold up every other project's deliveries.
//!
//! Per subscription, events are read from the outbox in read order after the
//! subscription's cursor, and the cursor moves past an event only once a
//! receiver answered 2xx (or once it was given up): delivery is at least once
//! and in order. A failing event is retried with exponential backoff; after
//! [`WebhookSettings::give_up_after`] of failures it is recorded as `gave_up`
//! and the subscription moves on to the next event. Times are the wall clock,
//! like the database's `now()` that leases and retries are compared with.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use chrono::{TimeDelta, Utc};
use reqwest::{Client, Url, header::CONTENT_TYPE, redirect};
use tokio::task::{self, JoinSet};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Engine;
use crate::{
    domain::{
        event::KindFilter,
        webhook::{self, is_private, literal_ip},
    },
    http::events::EventResponse,
    store::{
        Scope,
        events::{self, Event, EventFilter},
        webhooks::{self, DeliveryOutcome, NewDelivery, Webhook},
    },
};

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Subscriptions delivered at once by this replica.
    pub concurrency: usize,
    /// Subscriptions of one project delivered at once by this replica, so that
    /// one project's hanging receivers never take every slot.
    pub per_project: usize,
    /// Longest wait for one receiver's answer.
    pub request_timeout: Duration,
    /// First wait before retrying a failed event; it doubles with each failure.
    pub retry_base: Duration,
    /// Longest wait between two attempts.
    pub retry_max: Duration,
    /// How long an event is retried before it is given up.
    pub give_up_after: TimeDelta,
    /// How soon a subscription with nothing to deliver is looked at again.
    pub idle_look: TimeDelta,
    /// How often the dispatcher looks for due subscriptions.
    pub tick: Duration,
    /// How long a leased subscription stays ours without renewal (longer than `request_timeout`).
    pub lease: TimeDelta,
    /// Refuse receivers whose address is loopback, private, link-local or unique-local.
    pub deny_private: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            per_project: 2,
            request_timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            give_up_after: TimeDelta::days(1),
            idle_look: TimeDelta::seconds(1),
            tick: Duration::from_millis(500),
            lease: TimeDelta::seconds(60),
            deny_private: false,
        }
    }
}

/// Events read per query while delivering one subscription.
const PAGE: i64 = 100;
/// Events one lease delivers at most before the subscription is given back,
/// so that busy subscriptions take turns.
const EVENTS_PER_LEASE: usize = 500;

impl Engine {
    pub(super) async fn webhooks_loop(self, shutdown: CancellationToken) {
        let settings = self.config.webhooks.clone();
        let client = match base_client(&settings).build() {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "the webhook HTTP client cannot be built; no webhooks are delivered");
                shutdown.cancelled().await;
                return;
            }
        };
        let owner = Uuid::new_v4();
        let mut running = JoinSet::new();
        // The project of each delivery task, and how many each project runs.
        let mut projects: HashMap<task::Id, String> = HashMap::new();
        let mut per_project: HashMap<String, usize> = HashMap::new();
        loop {
            while running.len() < settings.concurrency.max(1) {
                let full: Vec<&str> = per_project
                    .iter()
                    .filter(|(_, n)| **n >= settings.per_project.max(1))
                    .map(|(p, _)| p.as_str())
                    .collect();
                match webhooks::claim_due(&self.db, owner, settings.lease, &full).await {
                    Ok(Some(hook)) => {
                        let project = hook.project_id.clone();
                        let dispatcher = Dispatcher {
                            db: self.db.clone(),
                            client: client.clone(),
                            settings: settings.clone(),
                            owner,
                        };
                        let task = running.spawn(async move { dispatcher.deliver(hook).await });
                        *per_project.entry(project.clone()).or_default() += 1;
                        projects.insert(task.id(), project);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "webhook claim failed; retrying");
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            tracing::error!(error = %e, "a webhook delivery task ended abnormally");
                            e.id()
                        }
                    };
                    if let Some(project) = projects.remove(&id)
                        && let Some(n) = per_project.get_mut(&project)
                    {
                        *n -= 1;
                        if *n == 0 {
                            per_project.remove(&project);
                        }
                    }
                }
                () = tokio::time::sleep(settings.tick) => {}
            }
        }
        // Deliveries in flight get the drain time; a lease left behind runs out.
        let drain = tokio::time::timeout(self.config.drain_timeout, async {
            while running.join_next().await.is_some() {}
        });
        if drain.await.is_err() {
            running.abort_all();
        }
    }
}

fn base_client(settings: &WebhookSettings) -> reqwest::ClientBuilder {
    Client::builder()
        .timeout(settings.request_timeout)
        .connect_timeout(settings.request_timeout)
        // A redirect is not a 2xx: it is retried, never followed (it could lead inside).
        .redirect(redirect::Policy::none())
}

/// What one delivery task needs.
struct Dispatcher {
    db: sqlx::PgPool,
    client: Client,
    settings: WebhookSettings,
    owner: Uuid,
}

impl Dispatcher {
    async fn deliver(self, hook: Webhook) {
        let id = hook.webhook_id;
        if let Err(e) = self.deliver_events(hook).await {
            tracing::error!(webhook_id = %id, error = %e, "webhook delivery pass failed; retrying");
            let _ = webhooks::release(&self.db, id, self.owner, self.settings.idle_look).await;
        }
    }

    /// Delivers the events after the cursor until none is left, one fails, or
    /// this lease has delivered its share.
    async fn deliver_events(&self, hook: Webhook) -> Result<(), sqlx::Error> {
        let filters: Vec<KindFilter> = hook
            .events
            .iter()
            .filter_map(|k| KindFilter::parse("events", k).ok())
            .collect();
        let scope = Scope::Project(&hook.project_id);
        let mut cursor = hook.cursor();
        let mut stored_cursor = cursor;
        let mut attempt = hook.attempt;
        let mut failing_since = hook.failing_since;
        let mut handled = 0;
        while handled < EVENTS_PER_LEASE {
            let page =
                events::list_events(&self.db, scope, &EventFilter::default(), Some(cursor), PAGE)
                    .await?;
            let last_page = page.len() < PAGE as usize;
            for event in page {
                handled += 1;
                if !filters.iter().any(|f| f.matches(event.kind)) {
                    cursor = event.position();
                    continue;
                }
                if !webhooks::renew_lease(
                    &self.db,
                    hook.webhook_id,
                    self.owner,
                    self.settings.lease,
                )
                .await?
                {
                    return Ok(()); // Deleted, or no longer ours.
                }
                attempt += 1;
                let answer = self.send(&hook, &event).await;
                let (status_code, error) = match &answer {
                    Ok(status) => (Some(i32::from(*status)), None),
                    Err(e) => (None, Some(e.as_str())),
                };
                let delivered = matches!(answer, Ok(200..=299));
                let now = Utc::now();
                let since = failing_since.unwrap_or(now);
                let outcome = if delivered {
                    DeliveryOutcome::Delivered
                } else if now - since >= self.settings.give_up_after {
                    DeliveryOutcome::GaveUp
                } else {
                    DeliveryOutcome::Failed
                };
                webhooks::record_delivery(
                    &self.db,
                    &NewDelivery {
                        webhook_id: hook.webhook_id,
                        event_id: event.event_id,
                        kind: event.kind.as_str(),
                        attempt,
                        status_code,
                        error,
                        outcome,
                    },
                )
                .await?;
                tracing::info!(
                    webhook_id = %hook.webhook_id, event_id = %event.event_id,
                    kind = event.kind.as_str(), attempt, status_code, outcome = ?outcome,
                    "webhook delivery attempt"
                );
                if outcome == DeliveryOutcome::Failed {
                    let wait = webhook::retry_delay(
                        u32::try_from(attempt).unwrap_or(u32::MAX),
                        self.settings.retry_base,
                        self.settings.retry_max,
                    );
                    let retry_at = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
                    webhooks::defer(
                        &self.db,
                        hook.webhook_id,
                        self.owner,
                        attempt,
                        since,
                        retry_at,
                    )
                    .await?;
                    return Ok(());
                }
                cursor = event.position();
                if !webhooks::advance(&self.db, hook.webhook_id, self.owner, cursor).await? {
                    return Ok(());
                }
                stored_cursor = cursor;
                attempt = 0;
                failing_since = None;
            }
            if last_page {
                break;
            }
        }
        if cursor != stored_cursor
            && !webhooks::advance(&self.db, hook.webhook_id, self.owner, cursor).await?
        {
            return Ok(());
        }
        // Nothing left (or its share done): look again soon, at once if more is waiting.
        let next = if handled >= EVENTS_PER_LEASE {
            TimeDelta::zero()
        } else {
            self.settings.idle_look
        };
        webhooks::release(&self.db, hook.webhook_id, self.owner, next).await
    }

    /// POSTs one event; the receiver's status, or why none came.
    async fn send(&self, hook: &Webhook, event: &Event) -> Result<u16, String> {
        let body = serde_json::to_vec(&EventResponse::from(event.clone()))
            .map_err(|e| format!("the event cannot be encoded: {e}"))?;
        let url = Url::parse(&hook.url).map_err(|e| format!("the URL is invalid: {e}"))?;
        let client = if self.settings.deny_private {
            self.checked_client(&url).await?
        } else {
            self.client.clone()
        };
        let signed_at = Utc::now().timestamp();
        let signature = webhook::signature(hook.secret.as_bytes(), signed_at, &body);
        client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("Stacksnap-Event-Id", event.event_id.to_string())
            .header("Stacksnap-Event-Kind", event.kind.as_str())
            .header("Stacksnap-Signature", signature)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                format!("the request {kind}: {}", e.without_url())
            })
    }

    /// A client bound to the addresses the URL's host resolves to now, after
    /// checking that none is private: the request cannot resolve elsewhere later.
    async fn checked_client(&self, url: &Url) -> Result<Client, String> {
        let host = url.host_str().unwrap_or_default();
        let refused = || {
            "the receiver's address is loopback, private, link-local or unique-local, \
             refused by --webhook-deny-private"
                .to_owned()
        };
        if let Some(ip) = literal_ip(host) {
            return if is_private(ip) {
                Err(refused())
            } else {
                Ok(self.client.clone())
            };
        }
        let port = url.port_or_known_default().unwrap_or(443);
        // Bounded like the request itself: a resolver that hangs must not outlive the lease.
        let lookup = tokio::net::lookup_host((host, port));
        let addrs: Vec<SocketAddr> = tokio::time::timeout(self.settings.request_timeout, lookup)
            .await
            .map_err(|_| "the receiver's name did not resolve in time".to_owned())?
            .map_err(|e| format!("the receiver's name does not resolve: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err("the receiver's name resolves to no address".to_owned());
        }
        if addrs.iter().any(|a| is_private(a.ip())) {
            return Err(refused());
        }
        base_client(&self.settings)
            .no_proxy()
            .resolve_to_addrs(host, &addrs)
            .build()
            .map_err(|e| format!("the HTTP client cannot be built: {e}"))
    }
}
