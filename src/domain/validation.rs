//! Collected validation failures, each naming the field at fault.

use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field: a path such as `schedules[0].cron` and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"field": "schedules[0].cron", "message": "expected 5 fields (minute hour day-of-month month day-of-week), found 4"}))]
pub struct FieldError {
    /// Path of the field, with `.` between object keys and `[i]` for array items.
    pub field: String,
    /// What is wrong with the value, in words a user can act on.
    pub message: String,
}

impl FieldError {
    /// Creates a field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Accumulates every problem found so a client can fix them all in one go.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// Records a problem only when `bad` holds.
    pub fn check(&mut self, bad: bool, field: impl Into<String>, message: impl Into<String>) {
        if bad {
            self.add(field, message);
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every problem recorded.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.0
    }

    /// Returns `value` when nothing was recorded, otherwise every problem.
    ///
    /// # Errors
    /// The recorded field errors, in the order they were found.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}
