//! Validated tokens, kept for a while so that every request does not ask
//! Keystone. Keyed by a SHA-256 hash of the token: the token itself is never
//! kept. An entry lasts until the earlier of the token's expiry and the TTL
//! (`--token-cache-ttl`), so a revoked token keeps working at most that long,
//! as with keystonemiddleware's `token_cache_time`. Tokens Keystone does not
//! know are remembered too, so a client retrying with a stale token does not
//! send Keystone a request each time; but briefly and apart, in a smaller map
//! of their own, so that a flood of junk tokens evicts only junk and never a
//! valid token. Both maps are bounded.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::openstack::keystone::validation::ValidatedToken;

/// The most valid tokens kept at once.
pub const MAX_ENTRIES: usize = 10_000;

/// The most tokens Keystone did not know kept at once.
pub const MAX_INVALID_ENTRIES: usize = 1_000;

/// How long a token Keystone did not know is remembered (at most the TTL).
pub const INVALID_TTL: Duration = Duration::from_secs(30);

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

/// Valid tokens and unknown ones, each bounded on its own.
#[derive(Default)]
struct Maps {
    valid: Bounded<Arc<ValidatedToken>>,
    invalid: Bounded<()>,
}

/// A bounded map of token hashes to what Keystone said of them.
pub struct TokenCache {
    ttl: Duration,
    max_entries: usize,
    max_invalid: usize,
    maps: Mutex<Maps>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .field("max_invalid", &self.max_invalid)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache whose entries last at most `ttl`, holding at most `max_entries`
    /// valid tokens and, apart, at most as many (and [`MAX_INVALID_ENTRIES`])
    /// unknown ones for at most [`INVALID_TTL`].
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        Self {
            ttl,
            max_entries,
            max_invalid: max_entries.min(MAX_INVALID_ENTRIES),
            maps: Mutex::new(Maps::default()),
        }
    }

    /// What Keystone said of the token under `key`, if that is still fresh at `now`.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<Verdict> {
        let mut maps = self.lock();
        if let Some(token) = maps.valid.get(key, now) {
            return Some(Some(token));
        }
        maps.invalid.get(key, now).map(|()| None)
    }

    /// Keeps what Keystone said at `now` (when the token expires at `wall_now`'s
    /// clock) until the earlier of its expiry and the TTL; an unknown token for
    /// at most [`INVALID_TTL`].
    pub fn put(&self, key: TokenKey, verdict: Verdict, now: Instant, wall_now: DateTime<Utc>) {
        let mut maps = self.lock();
        match verdict {
            Some(token) => {
                let lifetime = (token.expires_at - wall_now)
                    .to_std()
                    .unwrap_or_default()
                    .min(self.ttl);
                maps.invalid.remove(&key);
                maps.valid
                    .insert(key, token, now, lifetime, self.max_entries);
            }
            None => {
                maps.valid.remove(&key);
                let lifetime = self.ttl.min(INVALID_TTL);
                maps.invalid
                    .insert(key, (), now, lifetime, self.max_invalid);
            }
        }
    }

    /// How many entries are kept (fresh or not yet swept), valid and unknown.
    pub fn len(&self) -> usize {
        let maps = self.lock();
        maps.valid.len() + maps.invalid.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A panic while holding the lock leaves maps that are still consistent.
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Values that each last until an instant, at most `max` of them: when full,
/// expired entries are swept, then the soonest to expire goes.
struct Bounded<V> {
    entries: HashMap<TokenKey, (Instant, V)>,
}

impl<V> Default for Bounded<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<V: Clone> Bounded<V> {
    fn get(&mut self, key: &TokenKey, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((until, value)) if *until > now => Some(value.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: TokenKey, value: V, now: Instant, lifetime: Duration, max: usize) {
        if lifetime.is_zero() {
            return;
        }
        if self.entries.len() >= max && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (until, _)| *until > now);
            if self.entries.len() >= max
                && let Some(soonest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (until, _))| *until)
                    .map(|(key, _)| *key)
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, (now + lifetime, value));
    }

    fn remove(&mut self, key: &TokenKey) {
        self.entries.remove(key);
    }

    fn len(&self) -> usize {
        self.entries.len()
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
        let lasting = |secs| token(wall + TimeDelta::seconds(secs));
        cache.put(key("a"), lasting(5), now, wall);
        cache.put(key("b"), lasting(30), now, wall);
        cache.put(key("c"), lasting(50), now, wall);
        cache.put(key("d"), lasting(3600), now, wall);
        assert_eq!(cache.len(), 3);
        assert!(
            cache.get(&key("a"), now).is_none(),
            "the soonest to expire went"
        );
        let later = now + Duration::from_secs(40);
        cache.put(key("e"), lasting(3600), later, wall);
        assert_eq!(cache.len(), 3, "the expired b was swept");
        assert!(cache.get(&key("c"), later).is_some());
        assert!(cache.get(&key("e"), later).is_some());
    }

    #[test]
    fn an_unknown_token_is_remembered_briefly_and_a_later_verdict_replaces_it() {
        let cache = TokenCache::new(Duration::from_secs(300), 10);
        let (now, wall) = (Instant::now(), Utc::now());
        cache.put(key("t"), None, now, wall);
        assert_eq!(
            cache.get(&key("t"), now + INVALID_TTL - Duration::from_secs(1)),
            Some(None)
        );
        assert!(
            cache.get(&key("t"), now + INVALID_TTL).is_none(),
            "forgotten after INVALID_TTL"
        );
        cache.put(key("t"), None, now, wall);
        cache.put(key("t"), token(wall + TimeDelta::hours(1)), now, wall);
        assert!(matches!(cache.get(&key("t"), now), Some(Some(_))));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn invalid_tokens_never_evict_a_valid_one() {
        let cache = TokenCache::new(Duration::from_secs(300), 3);
        let (now, wall) = (Instant::now(), Utc::now());
        cache.put(key("valid"), token(wall + TimeDelta::hours(1)), now, wall);
        for junk in ["j1", "j2", "j3", "j4", "j5"] {
            cache.put(key(junk), None, now, wall);
        }
        assert!(
            matches!(cache.get(&key("valid"), now), Some(Some(_))),
            "junk tokens flushed the valid one"
        );
        assert_eq!(
            cache.get(&key("j5"), now),
            Some(None),
            "the newest junk is remembered"
        );
    }

    #[test]
    fn keys_are_hashes_not_tokens() {
        assert!(key("gAAAA-secret") == key("gAAAA-secret"));
        assert!(key("gAAAA-secret") != key("gAAAA-secreT"));
        assert_eq!(std::mem::size_of::<TokenKey>(), 32);
    }
}
