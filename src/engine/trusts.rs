//! Trust retirement: deletes in Keystone each trust the service made once
//! nothing refers to it any more (its policy deleted or its trust renewed,
//! and its last job and last deletion ended; a one-off run ended), and drops
//! callers' tokens no run needs any more. Which trusts qualify is decided in
//! `store::trusts`.

use chrono::TimeDelta;

use super::Engine;
use crate::store::trusts;
/// Trusts one pass deletes at most.
const BATCH: i64 = 50;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    /// Trusts deleted in Keystone (or found gone there).
    pub deleted: u64,
    /// Deletions Keystone refused or could not take; tried again later.
    pub failed: u64,
    /// Callers' tokens dropped from runs.
    pub tokens_dropped: u64,
}

/// The pause after a failed deletion: doubling from a minute, at most a day.
fn backoff(attempts: u32) -> TimeDelta {
    TimeDelta::minutes(1i64 << attempts.min(11)).min(TimeDelta::days(1))
}

impl Engine {
    /// Deletes the trusts nothing refers to any more, and drops spent tokens.
    ///
    /// # Errors
    /// The database fails; what was done stays done.
    pub async fn retire_trusts(&self) -> Result<Retired, sqlx::Error> {
        let now = self.clock.now();
        let mut retired = Retired {
            tokens_dropped: trusts::drop_spent_tokens(&self.db, now).await?,
            ..Retired::default()
        };
        for (trust, attempts) in
            trusts::unreferenced(&self.db, now, self.config.trust_grace, BATCH).await?
        {
            match self.cloud.delete_trust(&trust).await {
                Ok(()) => {
                    trusts::forget(&self.db, &trust).await?;
                    retired.deleted += 1;
                }
                Err(error) => {
                    tracing::warn!(error = %error, attempts, "cannot delete a trust yet");
                    let until = now + backoff(attempts.unsigned_abs());
                    trusts::put_off(&self.db, &trust, until, &error.to_string()).await?;
                    retired.failed += 1;
                }
            }
        }
        Ok(retired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_deletions_back_off_up_to_a_day() {
        assert_eq!(backoff(0), TimeDelta::minutes(1));
        assert_eq!(backoff(3), TimeDelta::minutes(8));
        assert_eq!(backoff(40), TimeDelta::days(1));
    }
}
