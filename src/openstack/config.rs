//! Cloud credentials found the way openstacksdk finds them: `OS_CLOUD` and a
//! clouds.yaml, or the `OS_*` variables.
//!
//! clouds.yaml is searched in `OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
//! `~/.config/openstack/clouds.yaml` and `/etc/openstack/clouds.yaml`, in that order.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use secrecy::SecretString;
use serde::Deserialize;

use crate::redact::{REDACTED, Redacted};

/// Everything needed to authenticate and pick endpoints.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    pub auth_url: String,
    pub auth: AuthMethod,
    pub region_name: Option<String>,
    /// Catalog interface: `public` (default), `internal` or `admin`.
    pub interface: String,
    /// Extra CA bundle (PEM) to trust.
    pub cacert: Option<PathBuf>,
    /// Skip TLS verification (`OS_INSECURE`, `verify: false`).
    pub insecure: bool,
}

/// How to prove who we are to Keystone. Its `Debug` prints the password and
/// the secret as `[redacted]`.
#[derive(Clone)]
pub enum AuthMethod {
    Password {
        user: NamedInDomain,
        password: SecretString,
        project: Option<NamedInDomain>,
    },
    ApplicationCredential {
        /// Either an id, or a name together with its user.
        id: Option<String>,
        name: Option<String>,
        user: Option<NamedInDomain>,
        secret: SecretString,
    },
}

impl fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password { user, project, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .field("password", &Redacted)
                .field("project", project)
                .finish(),
            Self::ApplicationCredential { id, name, user, .. } => f
                .debug_struct("ApplicationCredential")
                .field("id", id)
                .field("name", name)
                .field("user", user)
                .field("secret", &Redacted)
                .finish(),
        }
    }
}

/// A user or project given by id, or by name within a domain (by name or id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedInDomain {
    pub id: Option<String>,
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub domain_name: Option<String>,
}

/// Why credentials could not be found or used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no OpenStack credentials: set OS_CLOUD (with a clouds.yaml) or OS_AUTH_URL and friends"
    )]
    Missing,
    #[error("cloud {0:?} is not in {1}")]
    UnknownCloud(String, String),
    #[error(
        "OS_CLOUD is {0:?} but no clouds.yaml was found (looked in OS_CLIENT_CONFIG_FILE, ./, ~/.config/openstack/, /etc/openstack/)"
    )]
    NoCloudsFile(String),
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not valid clouds.yaml: {1}")]
    Parse(String, String),
    #[error("{0} is required")]
    Required(&'static str),
    #[error("unsupported auth_type {0:?}: use password or v3applicationcredential")]
    AuthType(String),
}

// No `Debug` on the file's shapes: `auth` holds the password as read.
#[derive(Deserialize)]
struct CloudsFile {
    clouds: BTreeMap<String, CloudEntry>,
}

#[derive(Default, Deserialize)]
struct CloudEntry {
    #[serde(default)]
    auth: HashMap<String, String>,
    auth_type: Option<String>,
    region_name: Option<String>,
    interface: Option<String>,
    cacert: Option<String>,
    verify: Option<bool>,
    insecure: Option<bool>,
}

impl CloudConfig {
    /// Reads credentials from the process environment and the file system.
    ///
    /// # Errors
    /// No credentials, an unreadable or invalid clouds.yaml, or a missing field.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_process(None)
    }

    /// Reads the cloud `name` (as if `OS_CLOUD` named it) from the clouds.yaml
    /// files the environment points at.
    ///
    /// # Errors
    /// As [`CloudConfig::from_env`].
    pub fn named(name: &str) -> Result<Self, ConfigError> {
        Self::from_process(Some(name))
    }

    fn from_process(cloud: Option<&str>) -> Result<Self, ConfigError> {
        let mut env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("OS_"))
            .collect();
        if let Some(cloud) = cloud {
            env.insert("OS_CLOUD".into(), cloud.to_owned());
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::from_vars(&env, home.as_deref())
    }

    /// Reads credentials from `env` (the `OS_*` variables) and clouds.yaml files.
    ///
    /// # Errors
    /// As [`CloudConfig::from_env`].
    pub fn from_vars(
        env: &HashMap<String, String>,
        home: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        if let Some(cloud) = env.get("OS_CLOUD").filter(|c| !c.is_empty()) {
            let path =
                clouds_file(env, home).ok_or_else(|| ConfigError::NoCloudsFile(cloud.clone()))?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
            return Self::from_clouds_yaml(&text, cloud, &path.display().to_string());
        }
        if !env.contains_key("OS_AUTH_URL") {
            return Err(ConfigError::Missing);
        }
        let entry = CloudEntry {
            auth: env
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("OS_")
                        .map(|k| (k.to_ascii_lowercase(), v.clone()))
                })
                .collect(),
            auth_type: env.get("OS_AUTH_TYPE").cloned(),
            region_name: env.get("OS_REGION_NAME").cloned(),
            interface: env.get("OS_INTERFACE").cloned(),
            cacert: env.get("OS_CACERT").cloned(),
            verify: None,
            insecure: env
                .get("OS_INSECURE")
                .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")),
        };
        entry.into_config()
    }

    /// Picks `cloud` out of a clouds.yaml text.
    ///
    /// # Errors
    /// Invalid YAML, an unknown cloud, or missing fields.
    pub fn from_clouds_yaml(text: &str, cloud: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut file: CloudsFile = yaml_serde::from_str(text)
            .map_err(|e| ConfigError::Parse(origin.to_owned(), without_values(&e.to_string())))?;
        file.clouds
            .remove(cloud)
            .ok_or_else(|| ConfigError::UnknownCloud(cloud.to_owned(), origin.to_owned()))?
            .into_config()
    }
}

/// A YAML error with every value it quotes (`invalid type: string "hunter2"`)
/// replaced by `[redacted]`: the value may be a password in the wrong place.
/// Keys, line and column stay, so the message still says where to look.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if c != '"' && c != '`' {
            out.push(c);
            continue;
        }
        let mut escaped = false;
        for inner in chars.by_ref() {
            match inner {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if inner == c => break,
                _ => {}
            }
        }
        out.push_str(REDACTED);
    }
    out
}

fn clouds_file(env: &HashMap<String, String>, home: Option<&Path>) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = env.get("OS_CLIENT_CONFIG_FILE") {
        candidates.push(path.into());
    }
    candidates.push("clouds.yaml".into());
    if let Some(home) = home {
        candidates.push(home.join(".config/openstack/clouds.yaml"));
    }
    candidates.push("/etc/openstack/clouds.yaml".into());
    candidates.into_iter().find(|p| p.is_file())
}

impl CloudEntry {
    fn into_config(self) -> Result<CloudConfig, ConfigError> {
        let auth = &self.auth;
        let get = |key: &str| auth.get(key).filter(|v| !v.is_empty()).cloned();
        let auth_url = get("auth_url").ok_or(ConfigError::Required("auth_url (OS_AUTH_URL)"))?;
        let user = NamedInDomain {
            id: get("user_id"),
            name: get("username"),
            domain_id: get("user_domain_id").or_else(|| get("domain_id")),
            domain_name: get("user_domain_name").or_else(|| get("domain_name")),
        };
        let auth_type = self
            .auth_type
            .clone()
            .or_else(|| {
                get("application_credential_secret").map(|_| "v3applicationcredential".into())
            })
            .unwrap_or_else(|| "password".into());
        let method = match auth_type.as_str() {
            "password" | "v3password" => {
                let project = NamedInDomain {
                    id: get("project_id").or_else(|| get("tenant_id")),
                    name: get("project_name").or_else(|| get("tenant_name")),
                    domain_id: get("project_domain_id").or_else(|| get("domain_id")),
                    domain_name: get("project_domain_name").or_else(|| get("domain_name")),
                };
                if user.id.is_none() && user.name.is_none() {
                    return Err(ConfigError::Required("username or user_id (OS_USERNAME)"));
                }
                AuthMethod::Password {
                    password: get("password")
                        .ok_or(ConfigError::Required("password (OS_PASSWORD)"))?
                        .into(),
                    project: (project.id.is_some() || project.name.is_some()).then_some(project),
                    user,
                }
            }
            "v3applicationcredential" | "applicationcredential" => {
                let id = get("application_credential_id");
                let name = get("application_credential_name");
                if id.is_none() && name.is_none() {
                    return Err(ConfigError::Required(
                        "application_credential_id or application_credential_name (OS_APPLICATION_CREDENTIAL_ID)",
                    ));
                }
                AuthMethod::ApplicationCredential {
                    secret: get("application_credential_secret")
                        .ok_or(ConfigError::Required(
                            "application_credential_secret (OS_APPLICATION_CREDENTIAL_SECRET)",
                        ))?
                        .into(),
                    user: (id.is_none()).then_some(user),
                    id,
                    name,
                }
            }
            other => return Err(ConfigError::AuthType(other.to_owned())),
        };
        Ok(CloudConfig {
            auth_url,
            auth: method,
            region_name: self.region_name.filter(|r| !r.is_empty()),
            interface: self
                .interface
                .filter(|i| !i.is_empty())
                .map(|i| i.trim_end_matches("URL").to_owned())
                .unwrap_or_else(|| "public".into()),
            cacert: self.cacert.filter(|c| !c.is_empty()).map(PathBuf::from),
            insecure: self.insecure.unwrap_or(false) || self.verify == Some(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    const CLOUDS: &str = r#"
clouds:
  prod:
    auth:
      auth_url: https://keystone.example.com:5000/v3
      username: stacksnap
      password: hunter2
      project_name: ops
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionTwo
    interface: internal
    verify: false
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example.com/v3
      application_credential_id: 21dced0fd20347869b93710d2b98aae0
      application_credential_secret: s3cret
"#;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_password_cloud_is_read_from_clouds_yaml() {
        let config = CloudConfig::from_clouds_yaml(CLOUDS, "prod", "test").unwrap();
        assert_eq!(config.auth_url, "https://keystone.example.com:5000/v3");
        assert_eq!(config.region_name.as_deref(), Some("RegionTwo"));
        assert_eq!(config.interface, "internal");
        assert!(config.insecure);
        let AuthMethod::Password {
            user,
            password,
            project,
        } = config.auth
        else {
            panic!("password")
        };
        assert_eq!(user.name.as_deref(), Some("stacksnap"));
        assert_eq!(user.domain_name.as_deref(), Some("Default"));
        assert_eq!(password.expose_secret(), "hunter2");
        assert_eq!(project.unwrap().name.as_deref(), Some("ops"));
    }

    #[test]
    fn an_application_credential_cloud_is_read_from_clouds_yaml() {
        let config = CloudConfig::from_clouds_yaml(CLOUDS, "appcred", "test").unwrap();
        assert_eq!(config.interface, "public");
        let AuthMethod::ApplicationCredential { id, secret, .. } = config.auth else {
            panic!("appcred")
        };
        assert_eq!(id.as_deref(), Some("21dced0fd20347869b93710d2b98aae0"));
        assert_eq!(secret.expose_secret(), "s3cret");
    }

    #[test]
    fn os_variables_work_without_a_clouds_file() {
        let env = vars(&[
            ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
            ("OS_USERNAME", "demo"),
            ("OS_PASSWORD", "demo"),
            ("OS_PROJECT_ID", "abc"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_INTERFACE", "publicURL"),
            ("OS_INSECURE", "true"),
        ]);
        let config = CloudConfig::from_vars(&env, None).unwrap();
        assert_eq!(config.interface, "public");
        assert!(config.insecure);
        let AuthMethod::Password { project, .. } = config.auth else {
            panic!("password")
        };
        assert_eq!(project.unwrap().id.as_deref(), Some("abc"));
    }

    #[test]
    fn os_cloud_reads_the_file_named_by_os_client_config_file() {
        let dir = std::env::temp_dir().join(format!("stacksnap-clouds-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clouds.yaml");
        std::fs::write(&path, CLOUDS).unwrap();
        let env = vars(&[
            ("OS_CLOUD", "prod"),
            ("OS_CLIENT_CONFIG_FILE", path.to_str().unwrap()),
        ]);
        assert_eq!(
            CloudConfig::from_vars(&env, None)
                .unwrap()
                .region_name
                .as_deref(),
            Some("RegionTwo")
        );
        let env = vars(&[
            ("OS_CLOUD", "nope"),
            ("OS_CLIENT_CONFIG_FILE", path.to_str().unwrap()),
        ]);
        assert!(matches!(
            CloudConfig::from_vars(&env, None),
            Err(ConfigError::UnknownCloud(..))
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_credentials_are_named() {
        assert!(matches!(
            CloudConfig::from_vars(&HashMap::new(), None),
            Err(ConfigError::Missing)
        ));
        let env = vars(&[("OS_AUTH_URL", "http://x/v3"), ("OS_USERNAME", "u")]);
        let err = CloudConfig::from_vars(&env, None).unwrap_err().to_string();
        assert!(err.contains("OS_PASSWORD"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = CloudConfig::from_clouds_yaml(CLOUDS, "prod", "test").unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("password: [redacted]"), "{printed}");
        assert!(
            printed.contains("stacksnap"),
            "the user is shown: {printed}"
        );
    }

    #[test]
    fn an_application_credential_secret_prints_redacted() {
        let config = CloudConfig::from_clouds_yaml(CLOUDS, "appcred", "test").unwrap();
        let printed = format!("{config:?} {:#?}", config.auth);
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("secret: [redacted]"), "{printed}");
        assert!(
            printed.contains("21dced0fd20347869b93710d2b98aae0"),
            "{printed}"
        );
    }

    #[test]
    fn a_clouds_yaml_error_does_not_quote_a_misplaced_secret() {
        for text in [
            "clouds:\n  prod:\n    auth: hunter2\n",
            "clouds:\n  prod:\n    verify: \"hunter2 \\\" x\"\n",
            "clouds:\n  prod:\n    verify: 31337\n",
        ] {
            let Err(error) = CloudConfig::from_clouds_yaml(text, "prod", "clouds.yaml") else {
                panic!("{text} was accepted")
            };
            let error = error.to_string();
            assert!(!error.contains("hunter2"), "{error}");
            assert!(!error.contains("31337"), "{error}");
            assert!(error.contains("clouds.prod."), "where to look: {error}");
            assert!(error.contains("line 3"), "where to look: {error}");
        }
    }

    #[test]
    fn quoted_values_are_taken_out_of_a_message() {
        assert_eq!(
            without_values(r#"invalid type: string "a \"b\" c", expected `x` at line 1"#),
            "invalid type: string [redacted], expected [redacted] at line 1"
        );
        assert_eq!(without_values("no quotes here"), "no quotes here");
        assert_eq!(
            without_values("unterminated \"secret"),
            "unterminated [redacted]"
        );
    }
}
