//! Decoding rows so that a row this code cannot read is an error naming it
//! (`job 0193… cannot be read: …`), never a silent default.

use sqlx::{FromRow, Row as _, postgres::PgRow};
use uuid::Uuid;

/// A table's name and the column that identifies its rows, for error messages.
pub trait Keyed {
    const TABLE: &'static str;
    const KEY: &'static str;
}

/// A row decoded into `T`; its decode error names the table and the row's key.
#[derive(Debug)]
pub struct Named<T>(pub T);

impl<T> Named<T> {
    /// The decoded value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<'r, T: FromRow<'r, PgRow> + Keyed> FromRow<'r, PgRow> for Named<T> {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        T::from_row(row)
            .map(Named)
            .map_err(|e| unreadable::<T>(row, &e))
    }
}

/// The error for a row of `T` that cannot be decoded.
pub fn unreadable<T: Keyed>(row: &PgRow, error: &sqlx::Error) -> sqlx::Error {
    let key = row
        .try_get::<Uuid, _>(T::KEY)
        .map_or_else(|_| "(no key)".to_owned(), |id| id.to_string());
    sqlx::Error::Decode(format!("{} {key} cannot be read: {error}", T::TABLE).into())
}

/// The values of decoded rows.
pub fn values<T>(rows: Vec<Named<T>>) -> Vec<T> {
    rows.into_iter().map(Named::into_inner).collect()
}

/// A row this build cannot decode, by its key, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: Uuid,
    pub reason: String,
}

/// Decodes one row of `T`; a row that cannot be decoded comes back as [`Unreadable`]
/// so that the caller can set it aside instead of failing every row with it.
///
/// # Errors
/// The row has no readable key.
pub fn decode_or_set_aside<T>(row: &PgRow) -> Result<Result<T, Unreadable>, sqlx::Error>
where
    T: for<'r> FromRow<'r, PgRow> + Keyed,
{
    match T::from_row(row) {
        Ok(value) => Ok(Ok(value)),
        Err(e) => Ok(Err(Unreadable {
            id: row.try_get(T::KEY)?,
            reason: unreadable::<T>(row, &e).to_string(),
        })),
    }
}
