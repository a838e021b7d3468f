//! Opaque cursors for keyset pagination over UUIDv7 ids.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use super::ApiError;

/// Items per page when the client names no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// Encodes the id of the last item on a page as the cursor of the next, with the
/// list it belongs to, so a cursor from one list is refused by another.
pub fn encode_cursor(list: &str, last_id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{list}:{last_id}"))
}

/// Decodes a cursor this service issued.
///
/// # Errors
/// A 422 on the `cursor` parameter when it was not issued here.
pub fn decode_cursor(list: &str, cursor: &str) -> Result<Uuid, ApiError> {
    let prefix = format!("v1:{list}:");
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(&prefix).and_then(|id| id.parse().ok()))
        .ok_or_else(|| {
            ApiError::field(
                "cursor",
                "is not a cursor this service issued; pass next_cursor from the previous page",
            )
        })
}

/// Checks a requested page size, applying the default.
///
/// # Errors
/// A 422 on `limit` outside 1..=1000.
pub fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, found {n}"),
        )),
    }
}

/// Splits one extra fetched row off a page: the items to return and the next cursor.
pub fn paginate<T>(
    list: &str,
    mut rows: Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> Uuid,
) -> (Vec<T>, Option<String>) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(|last| encode_cursor(list, id(last)));
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let id = Uuid::now_v7();
        assert_eq!(
            decode_cursor("jobs", &encode_cursor("jobs", id)).unwrap(),
            id
        );
        assert!(
            decode_cursor("policies", &encode_cursor("jobs", id)).is_err(),
            "another list's cursor"
        );
        assert!(decode_cursor("jobs", "bm9wZQ").is_err());
        assert!(decode_cursor("jobs", "!!!").is_err());
    }

    #[test]
    fn a_full_page_gets_a_cursor_and_a_short_one_does_not() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (page, next) = paginate("t", ids.clone(), 2, |id| *id);
        assert_eq!(page, ids[..2]);
        assert_eq!(next.map(|c| decode_cursor("t", &c).unwrap()), Some(ids[1]));
        let (page, next) = paginate("t", ids.clone(), 3, |id| *id);
        assert_eq!((page.len(), next), (3, None));
    }

    #[test]
    fn page_size_defaults_and_bounds() {
        assert_eq!(page_size(None).unwrap(), 100);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(1001)).is_err());
    }
}
