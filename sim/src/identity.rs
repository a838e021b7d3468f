//! Changing identities at run time, for the `/_sim` admin API and the
//! handle: granting or taking away a user's role on a project, and deleting
//! a trust (as Keystone does, the row stays with `deleted_at`). Tokens read
//! roles and trusts on every use, so a change takes effect at once: a
//! trust whose trustor lost a delegated role can no longer be used.

use chrono::Utc;

use super::{handle::SimHandle, roles::Role, state::State};

/// A trust as the simulator holds it (what `SimHandle::trusts` lists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustInfo {
    pub id: String,
    pub trustor_user_id: String,
    pub trustee_user_id: String,
    pub project_id: Option<String>,
    pub impersonation: bool,
    /// The delegated roles as requested (tokens carry what they imply too).
    pub roles: Vec<Role>,
}

impl SimHandle {
    /// The id of the user named `name`.
    pub fn user_id(&self, name: &str) -> Option<String> {
        let st = self.shared.lock();
        st.users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.id.clone())
    }

    /// The id of the project named `name`.
    pub fn project_id_named(&self, name: &str) -> Option<String> {
        let st = self.shared.lock();
        st.projects
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.id.clone())
    }

    /// Gives `user` the role `role` on `project` (names or ids), as
    /// `openstack role add` does.
    ///
    /// # Errors
    /// No such user or project.
    pub fn grant_role(&self, user: &str, project: &str, role: Role) -> anyhow::Result<()> {
        self.shared
            .lock()
            .set_role(user, project, role, true)
            .map_err(anyhow::Error::msg)
    }

    /// Takes the direct role `role` of `user` on `project` away, as
    /// `openstack role remove` does: its tokens there lose it at once, and
    /// trusts it made that delegate it stop working.
    ///
    /// # Errors
    /// No such user or project.
    pub fn revoke_role(&self, user: &str, project: &str, role: Role) -> anyhow::Result<()> {
        self.shared
            .lock()
            .set_role(user, project, role, false)
            .map_err(anyhow::Error::msg)
    }

    /// The trusts that exist (not deleted, expired or used up), oldest first.
    pub fn trusts(&self) -> Vec<TrustInfo> {
        let now = Utc::now();
        let st = self.shared.lock();
        st.trusts
            .iter()
            .filter(|t| t.live(now))
            .map(|t| TrustInfo {
                id: t.id.clone(),
                trustor_user_id: t.trustor_user_id.clone(),
                trustee_user_id: t.trustee_user_id.clone(),
                project_id: t.project_id.clone(),
                impersonation: t.impersonation,
                roles: t.roles.clone(),
            })
            .collect()
    }

    /// Deletes a trust as its trustor or an admin would; whether it existed.
    pub fn delete_trust(&self, id: &str) -> bool {
        self.shared.lock().delete_trust(id)
    }
}

impl State {
    /// Gives (`held`) or takes away a direct role of `user` on `project`,
    /// each named by name or id.
    ///
    /// # Errors
    /// No such user or project, in words for the admin API.
    pub(crate) fn set_role(
        &mut self,
        user: &str,
        project: &str,
        role: Role,
        held: bool,
    ) -> Result<(), String> {
        let project_id = self
            .projects
            .iter()
            .find(|p| p.id == project || p.name == project)
            .map(|p| p.id.clone())
            .ok_or_else(|| format!("no project {project:?}"))?;
        let user = self
            .users
            .iter_mut()
            .find(|u| u.id == user || u.name == user)
            .ok_or_else(|| format!("no user {user:?}"))?;
        let roles = user.project_roles.entry(project_id).or_default();
        if held {
            roles.insert(role);
        } else {
            roles.remove(&role);
        }
        Ok(())
    }

    /// Deletes a live trust; whether there was one.
    pub(crate) fn delete_trust(&mut self, id: &str) -> bool {
        let now = Utc::now();
        match self.trusts.find_mut(id, |t| t.live(now)) {
            Some(t) => {
                t.deleted_at = Some(now);
                true
            }
            None => false,
        }
    }
}
