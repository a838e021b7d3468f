//! Validated tokens, kept for a while so that every request does not ask
//! Keystone. Keyed by a SHA-256 hash of the token: the token itself is never
//! kept. An entry lasts until the earlier of the token's expiry and the TTL
//! (`--token-cache-ttl`), so a revoked token keeps working at most that long,
//! as with keystonemiddleware's `token_cache_time`. Tokens Keystone does not
//! know are remembered too, so a client retrying with a stale token does not
//! send Keystone a request each time. The number of entries is bounded.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::openstack::keystone::validation::ValidatedToken;

/// The most tokens kept at once.
pub const MAX_ENTRIES: usize = 10_000;

/// The hash a token is kept under.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// The key of `token`.
    pub fn of(token: &SecretString) -> Self {
        Self(Sha256::digest(token.expose_secret().as_bytes()).into())
    }
}

/// What Keystone said of a token: what it stands for, or `None` when it does not know it.
pub type Verdict = Option<Arc<ValidatedToken>>;

struct Entry {
    until: Instant,
    verdict: Verdict,
}

/// A bounded map of token hashes to what Keystone said of them.
pub struct TokenCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<TokenKey, Entry>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache whose entries last at most `ttl`, holding at most `max_entries`.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// What Keystone said of the token under `key`, if that is still fresh at `now`.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<Verdict> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some(entry) if entry.until > now => Some(entry.verdict.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps what Keystone said at `now` (when the token expires at `wall_now`'s
    /// clock) until the earlier of its expiry and the TTL.
    pub fn put(&self, key: TokenKey, verdict: Verdict, now: Instant, wall_now: DateTime<Utc>) {
        let lifetime = verdict.as_ref().map_or(self.ttl, |token| {
            (token.expires_at - wall_now)
                .to_std()
                .unwrap_or_default()
                .min(self.ttl)
        });
        if lifetime.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.until > now);
            if entries.len() >= self.max_entries
                && let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.until)
                    .map(|(key, _)| *key)
            {
                entries.remove(&soonest);
            }
        }
        entries.insert(
            key,
            Entry {
                until: now + lifetime,
                verdict,
            },
        );
    }

    /// How many entries are kept (fresh or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Entry>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn token(expires_at: DateTime<Utc>) -> Verdict {
        Some(Arc::new(ValidatedToken {
            user_id: "u".into(),
            user_name: "demo".into(),
            project: None,
            roles: vec!["member".into()],
            expires_at,
            application_credential: false,
            trust_scoped: false,
        }))
    }

    fn key(text: &str) -> TokenKey {
        TokenKey::of(&SecretString::from(text.to_owned()))
    }

    #[test]
    fn an_entry_lasts_until_the_earlier_of_the_ttl_and_the_token_expiry() {
        let cache = TokenCache::new(Duration::from_secs(300), 10);
        let (now, wall) = (Instant::now(), Utc::now());
        cache.put(key("long"), token(wall + TimeDelta::hours(1)), now, wall);
        cache.put(
            key("short"),
            token(wall + TimeDelta::seconds(10)),
            now,
            wall,
        );
        let at = |secs| now + Duration::from_secs(secs);
        assert!(cache.get(&key("long"), at(299)).is_some());
        assert!(
            cache.get(&key("long"), at(300)).is_none(),
            "the TTL ran out"
        );
        assert!(cache.get(&key("short"), at(9)).is_some());
        assert!(
            cache.get(&key("short"), at(10)).is_none(),
            "the token expired"
        );
    }

    #[test]
    fn unknown_tokens_are_remembered_and_expired_ones_are_not_kept() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let (now, wall) = (Instant::now(), Utc::now());
        cache.put(key("bad"), None, now, wall);
        assert_eq!(cache.get(&key("bad"), now), Some(None));
        cache.put(key("gone"), token(wall - TimeDelta::seconds(1)), now, wall);
        assert!(cache.get(&key("gone"), now).is_none());
        assert!(cache.get(&key("never"), now).is_none());
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_the_soonest_to_expire() {
        let cache = TokenCache::new(Duration::from_secs(60), 3);
        let (now, wall) = (Instant::now(), Utc::now());
        cache.put(key("a"), token(wall + TimeDelta::seconds(5)), now, wall);
        cache.put(key("b"), token(wall + TimeDelta::seconds(30)), now, wall);
        cache.put(key("c"), token(wall + TimeDelta::seconds(50)), now, wall);
        cache.put(key("d"), None, now, wall);
        assert_eq!(cache.len(), 3);
        assert!(
            cache.get(&key("a"), now).is_none(),
            "the soonest to expire went"
        );
        let later = now + Duration::from_secs(40);
        cache.put(key("e"), None, later, wall);
        assert_eq!(cache.len(), 3, "the expired b was swept");
        assert!(cache.get(&key("c"), later).is_some());
        assert!(cache.get(&key("e"), later).is_some());
    }

    #[test]
    fn keys_are_hashes_not_tokens() {
        assert!(key("gAAAA-secret") == key("gAAAA-secret"));
        assert!(key("gAAAA-secret") != key("gAAAA-secreT"));
        assert_eq!(std::mem::size_of::<TokenKey>(), 32);
    }
}
