//! Who is calling and what they may see: the simulated Keystone's users and
//! projects, and the caller a token stands for. Nova and Cinder scope their
//! resources to the caller's project as the real services do: a project
//! member reads and lists only its own project's resources; an admin reads
//! any one by id, but lists only its own project's unless it asks with
//! `all_tenants`. Plain data and rules; no HTTP.

use super::{config::SimConfig, rng::SplitMix64};

/// A Keystone project (all in domain `Default`).
#[derive(Clone, Debug)]
pub(crate) struct Project {
    pub id: String,
    pub name: String,
    pub description: String,
}

/// A Keystone user with a role in one project.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub password: String,
    pub project_id: String,
    /// Holds the `admin` role (on its project and on the system).
    pub admin: bool,
}

/// The identity behind a request's token.
#[derive(Clone, Debug, Default)]
pub(crate) struct Caller {
    pub user_id: String,
    /// The token's project; empty for a system-scoped token.
    pub project_id: String,
    /// The token carries the `admin` role (the services' `context.is_admin`).
    pub admin: bool,
}

/// Who owns a resource: its project and the user who made it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Owner {
    pub project_id: String,
    pub user_id: String,
}

impl Caller {
    /// The owner of what the caller creates.
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            project_id: self.project_id.clone(),
            user_id: self.user_id.clone(),
        }
    }

    /// Whether the caller may read a resource of `project` by id.
    pub(crate) fn may_read(&self, project: &str) -> bool {
        self.admin || self.project_id == project
    }

    /// Whether a list answered with `all_tenants` (already parsed) shows a
    /// resource of `project`.
    pub(crate) fn lists(&self, all_tenants: bool, project: &str) -> bool {
        (self.admin && all_tenants) || self.project_id == project
    }
}

/// Nova's `is_all_tenants` and Cinder's `get_bool_param('all_tenants')`: a
/// present but empty value means yes.
pub(crate) fn all_tenants(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        v.is_empty()
            || matches!(
                v.to_ascii_lowercase().as_str(),
                "1" | "t" | "true" | "on" | "y" | "yes"
            )
    })
}

/// The identities of a configuration: the admin (ids from the state's
/// generator, drawn first as before members existed) and each member, whose
/// ids derive from the seed and its name so that adding members does not
/// shift any other generated id.
pub(crate) fn identities(
    config: &SimConfig,
    admin_user_id: &str,
    admin_project_id: &str,
) -> (Vec<Project>, Vec<User>) {
    let mut projects = vec![Project {
        id: admin_project_id.to_owned(),
        name: config.admin.project_name.clone(),
        description: "Bootstrap project for initializing the cloud.".into(),
    }];
    let mut users = vec![User {
        id: admin_user_id.to_owned(),
        name: config.admin.username.clone(),
        password: config.admin.password.clone(),
        project_id: admin_project_id.to_owned(),
        admin: true,
    }];
    for m in &config.members {
        let project_id = match projects.iter().find(|p| p.name == m.project_name) {
            Some(p) => p.id.clone(),
            None => {
                let id = derived_id(config.seed, &format!("project:{}", m.project_name));
                projects.push(Project {
                    id: id.clone(),
                    name: m.project_name.clone(),
                    description: format!("{} project", m.project_name),
                });
                id
            }
        };
        users.push(User {
            id: derived_id(config.seed, &format!("user:{}", m.username)),
            name: m.username.clone(),
            password: m.password.clone(),
            project_id,
            admin: false,
        });
    }
    (projects, users)
}

/// A 32-digit hex id from the seed and a name (FNV-1a of the name mixed into
/// the seed of a fresh generator).
fn derived_id(seed: u64, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    SplitMix64::new(seed ^ h).hex_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_get_their_own_projects_and_stable_ids() {
        let config = SimConfig::default();
        let (projects, users) = identities(&config, "u0", "p0");
        let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["admin", "demo", "alt"]);
        let demo = users.iter().find(|u| u.name == "demo").unwrap();
        assert!(!demo.admin);
        assert_eq!(demo.project_id, projects[1].id);
        let id_of =
            |users: &[User], name: &str| users.iter().find(|u| u.name == name).unwrap().id.clone();
        let member = users.iter().find(|u| u.name == "member").unwrap();
        assert!(!member.admin);
        assert_eq!(
            member.project_id, "p0",
            "`member` is in the admin's project"
        );
        let (_, again) = identities(&config, "u0", "p0");
        assert_eq!(id_of(&again, "demo"), demo.id);
        let (_, reseeded) = identities(&config.clone().with_seed(2), "u0", "p0");
        assert_ne!(id_of(&reseeded, "demo"), demo.id);
    }

    #[test]
    fn members_list_their_project_and_admins_every_project_with_all_tenants() {
        let member = Caller {
            user_id: "u".into(),
            project_id: "p1".into(),
            admin: false,
        };
        let admin = Caller {
            admin: true,
            project_id: "p0".into(),
            ..member.clone()
        };
        assert!(member.may_read("p1") && !member.may_read("p0"));
        assert!(admin.may_read("p1"));
        assert!(!member.lists(true, "p0"));
        assert!(!admin.lists(false, "p1") && admin.lists(true, "p1"));
        assert!(all_tenants(Some("")) && all_tenants(Some("True")));
        assert!(!all_tenants(None) && !all_tenants(Some("0")));
    }
}
