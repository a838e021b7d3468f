//! A table of one kind of resource: rows in creation order (lists read them
//! so, newest last) and an index from id to row, so that a look-up by id costs
//! the same with 50,000 servers as with 5. It knows nothing of statuses: a
//! caller says which rows count (`live`).

use std::{
    collections::{HashMap, hash_map::Entry},
    ops::Deref,
};

/// A row with an id.
pub(crate) trait Row {
    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
}

/// Rows in creation order, indexed by id.
#[derive(Debug)]
pub(crate) struct Table<T> {
    rows: Vec<T>,
    /// The position of the first row with each id.
    index: HashMap<String, usize>,
    /// Some id is held by more than one row (a seed that repeats an id):
    /// look-ups by id then scan the rows, so that the first live row with
    /// the id wins, as it always did.
    repeated_ids: bool,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            index: HashMap::new(),
            repeated_ids: false,
        }
    }
}

impl<T> Deref for Table<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.rows
    }
}

impl<'a, T> IntoIterator for &'a Table<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.rows.iter()
    }
}

impl<T: Row> Table<T> {
    /// Appends a row.
    pub(crate) fn push(&mut self, row: T) {
        let at = self.rows.len();
        match self.index.entry(row.id().to_owned()) {
            Entry::Occupied(_) => self.repeated_ids = true,
            Entry::Vacant(e) => {
                e.insert(at);
            }
        }
        self.rows.push(row);
    }

    /// The first row with `id` for which `live` holds.
    pub(crate) fn find(&self, id: &str, live: impl Fn(&T) -> bool) -> Option<&T> {
        self.position(id, live).map(|i| &self.rows[i])
    }

    /// The first row with `id` for which `live` holds, to change (not its id).
    pub(crate) fn find_mut(&mut self, id: &str, live: impl Fn(&T) -> bool) -> Option<&mut T> {
        self.position(id, live).map(|i| &mut self.rows[i])
    }

    /// The first row with `id`, whatever its state.
    pub(crate) fn any(&self, id: &str) -> Option<&T> {
        self.find(id, |_| true)
    }

    /// The first row with `id`, whatever its state, to change (not its id).
    pub(crate) fn any_mut(&mut self, id: &str) -> Option<&mut T> {
        self.find_mut(id, |_| true)
    }

    /// The rows holding these ids, in creation order; `None` when some id is
    /// held by more than one row (the caller scans then). A listing filtered
    /// by id (Glance's `id=in:...`) then costs its ids, not the whole table.
    pub(crate) fn with_ids<'a>(&'a self, ids: &[&str]) -> Option<Vec<&'a T>> {
        if self.repeated_ids {
            return None;
        }
        let mut at: Vec<usize> = ids
            .iter()
            .filter_map(|id| self.index.get(*id).copied())
            .collect();
        at.sort_unstable();
        at.dedup();
        Some(at.into_iter().map(|i| &self.rows[i]).collect())
    }

    fn position(&self, id: &str, live: impl Fn(&T) -> bool) -> Option<usize> {
        if self.repeated_ids {
            return self.rows.iter().position(|r| r.id() == id && live(r));
        }
        self.index.get(id).copied().filter(|&i| live(&self.rows[i]))
    }

    /// Gives the first row with id `from` the id `to` (a seed that names its id).
    pub(crate) fn rename(&mut self, from: &str, to: &str) {
        let Some(at) = self.position(from, |_| true) else {
            return;
        };
        self.rows[at].set_id(to.to_owned());
        if self.repeated_ids {
            self.reindex();
            return;
        }
        self.index.remove(from);
        match self.index.entry(to.to_owned()) {
            Entry::Occupied(_) => self.reindex(),
            Entry::Vacant(e) => {
                e.insert(at);
            }
        }
    }

    /// Keeps the rows for which `keep` holds, in their order.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        let before = self.rows.len();
        self.rows.retain(keep);
        if self.rows.len() != before {
            self.reindex();
        }
    }

    /// Every row, to change in place; their ids must not change ([`Table::rename`]).
    pub(crate) fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.rows.iter_mut()
    }

    fn reindex(&mut self) {
        self.index.clear();
        self.repeated_ids = false;
        for (at, row) in self.rows.iter().enumerate() {
            match self.index.entry(row.id().to_owned()) {
                Entry::Occupied(_) => self.repeated_ids = true,
                Entry::Vacant(e) => {
                    e.insert(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct R(String, bool);

    impl Row for R {
        fn id(&self) -> &str {
            &self.0
        }
        fn set_id(&mut self, id: String) {
            self.0 = id;
        }
    }

    fn table(rows: &[(&str, bool)]) -> Table<R> {
        let mut t = Table::default();
        for (id, live) in rows {
            t.push(R((*id).into(), *live));
        }
        t
    }

    #[test]
    fn finds_by_id_only_live_rows() {
        let t = table(&[("a", true), ("b", false)]);
        assert_eq!(t.find("a", |r| r.1), Some(&R("a".into(), true)));
        assert_eq!(t.find("b", |r| r.1), None);
        assert_eq!(t.any("b"), Some(&R("b".into(), false)));
        assert_eq!(t.find("c", |_| true), None);
    }

    #[test]
    fn a_repeated_id_finds_the_first_live_row_as_a_scan_does() {
        let mut t = table(&[("a", false), ("b", true)]);
        t.push(R("a".into(), true));
        assert_eq!(t.find("a", |r| r.1), Some(&t[2]));
        assert_eq!(t.any("a"), Some(&t[0]));
    }

    #[test]
    fn rename_and_retain_keep_the_index_true() {
        let mut t = table(&[("a", true), ("b", true), ("c", true)]);
        t.rename("b", "x");
        assert_eq!(t.any("b"), None);
        assert_eq!(t.any("x").map(|r| r.0.as_str()), Some("x"));
        t.retain(|r| r.0 != "a");
        assert_eq!(t.len(), 2);
        assert_eq!(t.any("x"), Some(&t[0]));
        assert_eq!(t.any("c"), Some(&t[1]));
        t.rename("c", "x");
        assert_eq!(t.any("x"), Some(&t[0]));
        t.retain(|r| r.1);
        assert_eq!(t.find("x", |r| r.1), Some(&t[0]));
    }
}
