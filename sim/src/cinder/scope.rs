//! Cinder's project scoping: a project member reaches only its project's
//! volumes, snapshots, groups and group snapshots (another project's are
//! "not found", as in Cinder's `get` with `project_only`); an admin reaches
//! any by id and lists other projects' only with `all_tenants`.

use std::time::Instant;

use crate::{
    http::Ctx,
    state::{Fail, GONE, State},
    tenancy,
};

/// The 404 for a request naming (in `segs[1]`, `segs[2]`) a resource of a
/// project the caller may not read, if it does.
pub(super) fn hidden(st: &State, ctx: &Ctx, collection: &str, id: &str) -> Option<Fail> {
    let (project, kind) = owner(st, ctx.now, collection, id)?;
    project
        .filter(|p| !ctx.caller.may_read(p))
        .map(|_| Fail::not_found(format!("{kind} {id} could not be found.")))
}

/// Whether a request names an existing volume, snapshot, group or group
/// snapshot (other collections count as existing: their handlers decide).
pub(super) fn exists(st: &State, now: Instant, collection: &str, id: &str) -> bool {
    owner(st, now, collection, id).is_none_or(|(project, _)| project.is_some())
}

/// The project of the resource `id` of `collection` (`None` inside: no such
/// resource) and the word Cinder's 404 names it with; `None` for a
/// collection without projects.
fn owner<'a>(
    st: &'a State,
    now: Instant,
    collection: &str,
    id: &str,
) -> Option<(Option<&'a String>, &'static str)> {
    Some(match collection {
        "volumes" => (st.volume(id, now).map(|v| &v.project_id), "Volume"),
        "snapshots" => (st.snapshot(id, now).map(|s| &s.project_id), "Snapshot"),
        "groups" => (
            st.groups
                .find(id, |g| g.status.at(now) != GONE)
                .map(|g| &g.project_id),
            "Group",
        ),
        "group_snapshots" => (
            st.group_snapshots
                .find(id, |g| g.status.at(now) != GONE)
                .map(|g| &g.project_id),
            "GroupSnapshot",
        ),
        _ => return None,
    })
}

/// Whether a list shows a resource of `project` to the caller.
pub(crate) fn listed(ctx: &Ctx, project: &str) -> bool {
    ctx.caller
        .lists(tenancy::all_tenants(ctx.q("all_tenants")), project)
}
