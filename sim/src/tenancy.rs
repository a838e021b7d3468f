//! Who is calling and what they may see: the simulated Keystone's users and
//! projects with their role assignments, and the caller a token stands for.
//! Nova and Cinder scope their resources to the caller's project as the real
//! services do: a project member reads and lists only its own project's
//! resources; an admin reads any one by id, but lists only its own project's
//! unless it asks with `all_tenants`. Writes need `member` in the resource's
//! project or `admin` (the services' default policies). Plain data and
//! rules; no HTTP.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    config::SimConfig,
    rng::SplitMix64,
    roles::{Role, Roles},
};

/// A Keystone project (all in domain `Default`).
#[derive(Clone, Debug)]
pub(crate) struct Project {
    pub id: String,
    pub name: String,
    pub description: String,
}

/// A Keystone user and its direct role assignments.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub password: String,
    /// Its home project (the one the configuration names).
    pub project_id: String,
    /// Direct roles per project id (`keystone-manage bootstrap` and
    /// `openstack role add` make these).
    pub project_roles: BTreeMap<String, BTreeSet<Role>>,
    /// Direct roles on the system (`admin` for the admin user).
    pub system_roles: BTreeSet<Role>,
}

impl User {
    /// The effective roles on `project` (none: no access).
    pub(crate) fn roles_on(&self, project: &str) -> Roles {
        Roles::effective(
            self.project_roles
                .get(project)
                .into_iter()
                .flatten()
                .copied(),
        )
    }

    /// The effective roles on the system.
    pub(crate) fn roles_on_system(&self) -> Roles {
        Roles::effective(self.system_roles.iter().copied())
    }
}

/// The identity behind a request's token, as keystonemiddleware hands it to
/// a service (and Keystone to its own policies).
#[derive(Clone, Debug, Default)]
pub(crate) struct Caller {
    /// The token's user: the trustor of an impersonating trust.
    pub user_id: String,
    /// The token's project; empty for a system-scoped or unscoped token.
    pub project_id: String,
    /// The token's effective roles.
    pub roles: Roles,
    /// A system-scoped token.
    pub system: bool,
    /// The trust of a trust-scoped token.
    pub trust_id: Option<String>,
    /// The token came from an application credential.
    pub application_credential: bool,
}

/// Who owns a resource: its project and the user who made it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Owner {
    pub project_id: String,
    pub user_id: String,
}

impl Caller {
    /// The token carries the `admin` role (the services' `context.is_admin`).
    pub(crate) fn admin(&self) -> bool {
        self.roles.has(Role::Admin)
    }

    /// Whether the caller may change a resource of `project`: Nova's,
    /// Cinder's and Glance's default `admin or (member and project_id)`.
    pub(crate) fn may_write(&self, project: &str) -> bool {
        self.admin() || (self.roles.has(Role::Member) && self.project_id == project)
    }

    /// The owner of what the caller creates.
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            project_id: self.project_id.clone(),
            user_id: self.user_id.clone(),
        }
    }

    /// Whether the caller may read a resource of `project` by id.
    pub(crate) fn may_read(&self, project: &str) -> bool {
        self.admin() || self.project_id == project
    }

    /// Whether a list answered with `all_tenants` (already parsed) shows a
    /// resource of `project`.
    pub(crate) fn lists(&self, all_tenants: bool, project: &str) -> bool {
        (self.admin() && all_tenants) || self.project_id == project
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
/// generator, drawn first as before members existed), with `admin` and
/// `service` on its project (a service user, as stacksnap runs) and `admin`
/// on the system, and each member with its one role in its project, whose
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
        project_roles: BTreeMap::from([(
            admin_project_id.to_owned(),
            BTreeSet::from([Role::Admin, Role::Service]),
        )]),
        system_roles: BTreeSet::from([Role::Admin]),
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
            project_roles: BTreeMap::from([(project_id.clone(), BTreeSet::from([m.role]))]),
            project_id,
            system_roles: BTreeSet::new(),
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
        assert_eq!(demo.roles_on(&projects[1].id).joined(), "member,reader");
        assert!(demo.roles_on("p0").is_empty() && demo.roles_on_system().is_empty());
        assert_eq!(demo.project_id, projects[1].id);
        let reader = users.iter().find(|u| u.name == "demo_reader").unwrap();
        assert_eq!(reader.roles_on(&projects[1].id).joined(), "reader");
        let admin = &users[0];
        assert_eq!(
            admin.roles_on("p0").joined(),
            "admin,manager,member,reader,service"
        );
        assert!(admin.roles_on_system().has(Role::Admin));
        let id_of =
            |users: &[User], name: &str| users.iter().find(|u| u.name == name).unwrap().id.clone();
        let member = users.iter().find(|u| u.name == "member").unwrap();
        assert!(!member.roles_on("p0").has(Role::Admin));
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
            roles: Roles::effective([Role::Member]),
            ..Caller::default()
        };
        let admin = Caller {
            roles: Roles::effective([Role::Admin]),
            project_id: "p0".into(),
            ..member.clone()
        };
        assert!(member.may_read("p1") && !member.may_read("p0"));
        assert!(admin.may_read("p1"));
        assert!(!member.lists(true, "p0"));
        assert!(!admin.lists(false, "p1") && admin.lists(true, "p1"));
        assert!(all_tenants(Some("")) && all_tenants(Some("True")));
    }

    #[test]
    fn members_write_in_their_project_readers_nowhere_admins_anywhere() {
        let as_role = |role: Role| Caller {
            project_id: "p1".into(),
            roles: Roles::effective([role]),
            ..Caller::default()
        };
        assert!(as_role(Role::Member).may_write("p1"));
        assert!(!as_role(Role::Member).may_write("p2"));
        assert!(!as_role(Role::Reader).may_write("p1"));
        assert!(!as_role(Role::Service).may_write("p1"));
        assert!(as_role(Role::Admin).may_write("p2"));
        assert!(!all_tenants(None) && !all_tenants(Some("0")));
    }
}
