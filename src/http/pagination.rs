//! Keyset pagination, once for every list: page sizes, opaque cursors over the
//! ids of the rows, and the skeleton that fetches a page and its next cursor.
//!
//! A cursor is bound to the scope it was made for (one project, or every
//! project for an admin): used under another scope it is refused, so a page
//! never continues a list the caller was not reading.
//!
//! It knows nothing of the rows themselves: each list handler passes its store
//! query and the id of a row, and maps the rows of the page to its response.

use std::future::Future;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::ApiError;
use crate::{domain::validation::FieldError, store::Scope};

/// Items per page when the client names no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// A paginated list. Each has cursors of its own: a cursor of one list is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Policies,
    Runs,
    Jobs,
    Snapshots,
    /// Events: the cursor's 16 bytes are a position in read order, not an id.
    Events,
    Webhooks,
}

impl List {
    /// Every list, for the tests of the cursor forms.
    pub const ALL: [Self; 6] = [
        Self::Policies,
        Self::Runs,
        Self::Jobs,
        Self::Snapshots,
        Self::Events,
        Self::Webhooks,
    ];

    /// The three bytes every cursor of the list starts with: `c`, the list and
    /// the form's version (2: bound to a scope).
    fn header(self) -> [u8; 3] {
        let list = match self {
            Self::Policies => b'p',
            Self::Runs => b'r',
            Self::Jobs => b'j',
            Self::Snapshots => b's',
            Self::Events => b'e',
            Self::Webhooks => b'w',
        };
        [b'c', list, 2]
    }

    /// The regular expression that matches exactly the cursors of this list,
    /// as the OpenAPI document declares it on each list's `cursor` parameter.
    ///
    /// A cursor is the base64url form (no padding) of the header, the 16 bytes
    /// of an id and the 8 bytes of its scope's tag: 4 fixed characters, then 32.
    pub fn cursor_pattern(self) -> &'static str {
        match self {
            Self::Policies => "^Y3AC[A-Za-z0-9_-]{32}$",
            Self::Runs => "^Y3IC[A-Za-z0-9_-]{32}$",
            Self::Jobs => "^Y2oC[A-Za-z0-9_-]{32}$",
            Self::Snapshots => "^Y3MC[A-Za-z0-9_-]{32}$",
            Self::Events => "^Y2UC[A-Za-z0-9_-]{32}$",
            Self::Webhooks => "^Y3cC[A-Za-z0-9_-]{32}$",
        }
    }
}

/// Bytes of a cursor after its header: the id, then the scope's tag.
const ID_BYTES: usize = 16;
const TAG_BYTES: usize = 8;

/// The tag that binds a cursor to its scope: the start of a SHA-256 of it.
fn scope_tag(scope: Scope<'_>) -> [u8; TAG_BYTES] {
    let digest = match scope.project() {
        Some(project) => Sha256::new()
            .chain_update(b"project\0")
            .chain_update(project.as_bytes())
            .finalize(),
        None => Sha256::digest(b"all-projects"),
    };
    let mut tag = [0; TAG_BYTES];
    tag.copy_from_slice(&digest[..TAG_BYTES]);
    tag
}

/// Encodes the id of the last item on a page of `scope` as the cursor of the next.
pub fn encode_cursor(list: List, scope: Scope<'_>, last_id: Uuid) -> String {
    let mut bytes = list.header().to_vec();
    bytes.extend_from_slice(last_id.as_bytes());
    bytes.extend_from_slice(&scope_tag(scope));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a cursor of `list` made for `scope`.
///
/// # Errors
/// The field error for `cursor` when it is not a cursor of this list, or was
/// made for another scope (another project, or `all_projects`).
pub fn decode_cursor(list: List, scope: Scope<'_>, cursor: &str) -> Result<Uuid, FieldError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok();
    let rest = bytes
        .as_deref()
        .and_then(|b| b.strip_prefix(&list.header()))
        .filter(|rest| rest.len() == ID_BYTES + TAG_BYTES)
        .ok_or_else(|| {
            FieldError::new(
                "cursor",
                "is not a cursor of this list; pass next_cursor from the previous page",
            )
        })?;
    let (id, tag) = rest.split_at(ID_BYTES);
    if tag != scope_tag(scope) {
        return Err(FieldError::new(
            "cursor",
            "was made for another project (or for all_projects); pass next_cursor from a page \
             of this list with the same all_projects",
        ));
    }
    Ok(Uuid::from_slice(id).expect("16 bytes are a uuid"))
}

/// Checks a requested page size, applying the default.
///
/// # Errors
/// The field error for `limit` outside 1..=1000.
pub fn page_size(limit: Option<u32>) -> Result<u32, FieldError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(FieldError::new(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, found {n}"),
        )),
    }
}

/// One page of items and the cursor of the next; `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The same page with each item mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// Reads one page of `list`: checks `limit` and `cursor`, asks `fetch` for the
/// rows after the cursor's id (one more than the page holds), and turns the
/// extra row, if any, into the next cursor.
///
/// # Errors
/// A 422 naming `limit` and `cursor` when they are invalid; the store's error.
pub async fn fetch_page<R, F, Fut>(
    list: List,
    scope: Scope<'_>,
    limit: Option<u32>,
    cursor: Option<&str>,
    fetch: F,
    id: impl Fn(&R) -> Uuid,
) -> Result<Page<R>, ApiError>
where
    F: FnOnce(Option<Uuid>, i64) -> Fut,
    Fut: Future<Output = Result<Vec<R>, sqlx::Error>>,
{
    let limit = page_size(limit);
    let after = cursor.map(|c| decode_cursor(list, scope, c)).transpose();
    let (limit, after) = match (limit, after) {
        (Ok(limit), Ok(after)) => (limit, after),
        (limit, after) => {
            let errors = [limit.err(), after.err()].into_iter().flatten().collect();
            return Err(ApiError::Unprocessable(errors));
        }
    };
    let rows = fetch(after, i64::from(limit) + 1).await?;
    Ok(split_page(list, scope, rows, limit, id))
}

/// Splits the one extra fetched row off a page.
fn split_page<T>(
    list: List,
    scope: Scope<'_>,
    mut rows: Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> Uuid,
) -> Page<T> {
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| encode_cursor(list, scope, id(last)))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: Scope<'static> = Scope::Project("demo");

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let id = Uuid::now_v7();
        assert_eq!(
            decode_cursor(List::Jobs, DEMO, &encode_cursor(List::Jobs, DEMO, id)).unwrap(),
            id
        );
        assert!(
            decode_cursor(List::Policies, DEMO, &encode_cursor(List::Jobs, DEMO, id)).is_err(),
            "another list's cursor"
        );
        assert!(decode_cursor(List::Jobs, DEMO, "bm9wZQ").is_err());
        assert!(decode_cursor(List::Jobs, DEMO, "!!!").is_err());
    }

    #[test]
    fn a_cursor_is_refused_under_another_scope() {
        let id = Uuid::now_v7();
        let cursor = encode_cursor(List::Policies, DEMO, id);
        for other in [Scope::Project("alt"), Scope::AllProjects] {
            let error = decode_cursor(List::Policies, other, &cursor).unwrap_err();
            assert_eq!(error.field, "cursor");
            assert!(error.message.contains("another project"), "{error:?}");
        }
        let all = encode_cursor(List::Policies, Scope::AllProjects, id);
        assert!(decode_cursor(List::Policies, DEMO, &all).is_err());
        assert_eq!(
            decode_cursor(List::Policies, Scope::AllProjects, &all).unwrap(),
            id
        );
    }

    #[test]
    fn every_cursor_has_the_form_its_list_declares() {
        for list in List::ALL {
            let pattern = list.cursor_pattern();
            let prefix = &pattern[1..5];
            for id in [Uuid::nil(), Uuid::max(), Uuid::now_v7(), Uuid::new_v4()] {
                for scope in [DEMO, Scope::AllProjects] {
                    let cursor = encode_cursor(list, scope, id);
                    assert_eq!(cursor.len(), 36, "{cursor}");
                    assert!(cursor.starts_with(prefix), "{cursor} for {list:?}");
                    assert!(
                        cursor[4..]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    );
                }
            }
        }
    }

    #[test]
    fn a_full_page_gets_a_cursor_and_a_short_one_does_not() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = split_page(List::Runs, DEMO, ids.clone(), 2, |id| *id);
        assert_eq!(page.items, ids[..2]);
        assert_eq!(
            page.next_cursor
                .map(|c| decode_cursor(List::Runs, DEMO, &c).unwrap()),
            Some(ids[1])
        );
        let page = split_page(List::Runs, DEMO, ids.clone(), 3, |id| *id);
        assert_eq!((page.items.len(), page.next_cursor), (3, None));
    }

    #[test]
    fn page_size_defaults_and_bounds() {
        assert_eq!(page_size(None).unwrap(), 100);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(1001)).is_err());
    }
}
