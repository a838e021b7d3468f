//! Nova (compute v2.1): servers and the `createImage` action.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    decode,
    error::{ErrorKind, OpenStackError},
    session::{Call, Service, Session},
    version::Microversion,
};

/// From this microversion on, `createImage` answers with the image id in its body.
pub const IMAGE_ID_IN_BODY: Microversion = Microversion(2, 45);
/// From this microversion on, `POST /servers` takes `tags`.
pub const TAGS_IN_CREATE: Microversion = Microversion(2, 52);

/// A server, with the fields snapshotting needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub status: String,
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
    /// `""` (a string) for a server booted from a volume, else `{"id": ..}`.
    #[serde(default)]
    pub image: Value,
    #[serde(rename = "os-extended-volumes:volumes_attached", default)]
    pub volumes_attached: Vec<AttachedVolume>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Present from microversion 2.26.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// `{"id", "links"}` below microversion 2.47; from 2.47 `{"original_name",
    /// "vcpus", "ram", "disk", "ephemeral", "swap", "extra_specs"}` (no id).
    #[serde(default)]
    pub flavor: Value,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(rename = "OS-EXT-AZ:availability_zone", default)]
    pub availability_zone: Option<String>,
}

/// Why Nova put a server in ERROR.
#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub code: Option<u16>,
}

/// A volume attached to a server.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachedVolume {
    pub id: String,
    #[serde(default)]
    pub delete_on_termination: bool,
}

impl Server {
    /// The image the server was booted from; `None` when it boots from a volume.
    pub fn image_id(&self) -> Option<&str> {
        self.image
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
    }

    /// The flavor as a snapshot records it: what Nova showed, without links.
    pub fn recorded_flavor(&self) -> Option<Value> {
        let mut flavor = self.flavor.as_object()?.clone();
        flavor.remove("links");
        (!flavor.is_empty()).then_some(Value::Object(flavor))
    }

    /// Whether the server boots from a Cinder volume.
    pub fn is_volume_backed(&self) -> bool {
        self.image_id().is_none()
    }
}

/// Which servers to list.
#[derive(Debug, Clone, Default)]
pub struct ServerFilter {
    /// Servers carrying all these tags.
    pub tags: Vec<String>,
    /// Every project's servers (admin only).
    pub all_tenants: bool,
    pub page_size: Option<u32>,
}

#[derive(Deserialize)]
struct ServerBody {
    server: Server,
}

#[derive(Deserialize)]
struct ServersBody {
    servers: Vec<Server>,
    #[serde(default)]
    servers_links: Vec<super::Link>,
}

#[derive(Deserialize)]
struct CreateImageBody {
    image_id: String,
}

/// The compute API.
#[derive(Debug, Clone, Copy)]
pub struct Nova<'a>(pub(super) &'a Session);

impl Nova<'_> {
    /// Reads one server.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it does not exist; other typed failures.
    pub async fn get_server(&self, id: &str) -> Result<Server, OpenStackError> {
        let call = Call::new(
            Service::Compute,
            "get_server",
            Method::GET,
            format!("/servers/{}", super::segment(id)),
        );
        let reply = self.0.send(&call).await?;
        decode::<ServerBody>(&call, &reply).map(|b| b.server)
    }

    /// Lists servers, following pages by marker until the last.
    ///
    /// # Errors
    /// Typed failures of any page.
    pub async fn list_servers(&self, filter: &ServerFilter) -> Result<Vec<Server>, OpenStackError> {
        let page_size = filter.page_size.unwrap_or(500);
        let mut servers: Vec<Server> = Vec::new();
        loop {
            let mut query = vec![("limit".to_owned(), page_size.to_string())];
            if !filter.tags.is_empty() {
                query.push(("tags".into(), filter.tags.join(",")));
            }
            if filter.all_tenants {
                query.push(("all_tenants".into(), "1".into()));
            }
            if let Some(last) = servers.last() {
                query.push(("marker".into(), last.id.clone()));
            }
            let call = Call::new(
                Service::Compute,
                "list_servers",
                Method::GET,
                "/servers/detail",
            )
            .query(query);
            let reply = self.0.send(&call).await?;
            let body = decode::<ServersBody>(&call, &reply)?;
            // A short page ends the list unless the cloud says there is more
            // (it caps pages at its own `max_limit`, which may be below ours).
            let more =
                super::more_pages(body.servers.len(), page_size as usize, &body.servers_links);
            let page = body.servers;
            servers.extend(page);
            if !more {
                return Ok(servers);
            }
        }
    }

    /// The microversion compute calls are made at (`None`: the cloud has none).
    ///
    /// # Errors
    /// The endpoint cannot be discovered.
    pub async fn microversion(&self) -> Result<Option<Microversion>, OpenStackError> {
        self.0.microversion(Service::Compute).await
    }

    /// Creates a server; `server` is the body's `server` object. Returns the new server's id.
    ///
    /// # Errors
    /// A 400 naming what Nova refuses (a flavor too small for the image, a
    /// network it cannot allocate), [`ErrorKind::QuotaExceeded`], and the rest.
    pub async fn create_server(&self, server: Value) -> Result<String, OpenStackError> {
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        #[derive(Deserialize)]
        struct CreatedBody {
            server: Created,
        }
        let call = Call::new(Service::Compute, "create_server", Method::POST, "/servers")
            .json(json!({"server": server}));
        let reply = self.0.send(&call).await?;
        decode::<CreatedBody>(&call, &reply).map(|b| b.server.id)
    }

    /// Deletes a server.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it is already gone; other typed failures.
    pub async fn delete_server(&self, id: &str) -> Result<(), OpenStackError> {
        let call = Call::new(
            Service::Compute,
            "delete_server",
            Method::DELETE,
            format!("/servers/{}", super::segment(id)),
        );
        self.0.send(&call).await.map(|_| ())
    }

    /// The flavors the project may boot with, as `(id, name)`.
    ///
    /// # Errors
    /// Typed failures.
    pub async fn list_flavors(&self) -> Result<Vec<(String, String)>, OpenStackError> {
        #[derive(Deserialize)]
        struct Flavor {
            id: String,
            #[serde(default)]
            name: String,
        }
        #[derive(Deserialize)]
        struct FlavorsBody {
            flavors: Vec<Flavor>,
        }
        let call = Call::new(Service::Compute, "list_flavors", Method::GET, "/flavors");
        let reply = self.0.send(&call).await?;
        decode::<FlavorsBody>(&call, &reply)
            .map(|b| b.flavors.into_iter().map(|f| (f.id, f.name)).collect())
    }

    /// Asks Nova to snapshot a server into a new image; returns the image id.
    ///
    /// Below microversion 2.45 the id is read from the `Location` header.
    ///
    /// # Errors
    /// [`ErrorKind::Conflict`] while the server is busy (or cannot be quiesced
    /// when that is required), [`ErrorKind::QuotaExceeded`], and the rest.
    pub async fn create_image(
        &self,
        server_id: &str,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, OpenStackError> {
        let call = Call::new(
            Service::Compute,
            "create_image",
            Method::POST,
            format!("/servers/{}/action", super::segment(server_id)),
        )
        .json(json!({"createImage": {"name": name, "metadata": metadata}}));
        let reply = self.0.send(&call).await?;
        if reply.microversion.is_some_and(|v| v >= IMAGE_ID_IN_BODY)
            && let Ok(body) = decode::<CreateImageBody>(&call, &reply)
        {
            return Ok(body.image_id);
        }
        let location = reply.headers.get("location").and_then(|v| v.to_str().ok());
        image_id_from_location(location).ok_or_else(|| {
            let mut error = OpenStackError::new(
                ErrorKind::Decode,
                "nova",
                "create_image",
                "the answer names no image: no image_id in the body and no Location header",
            );
            error.request_id = reply.request_id.clone();
            error
        })
    }
}

/// The image id at the end of a `Location` URL such as `http://glance/v2/images/<id>`.
pub fn image_id_from_location(location: Option<&str>) -> Option<String> {
    let id = location?.trim_end_matches('/').rsplit('/').next()?;
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_headers_give_the_image_id() {
        assert_eq!(
            image_id_from_location(Some(
                "http://glance.example.com/v2/images/0e7761dd-ee98-41f0-ba35-05994e446431"
            ))
            .as_deref(),
            Some("0e7761dd-ee98-41f0-ba35-05994e446431")
        );
        assert_eq!(image_id_from_location(None), None);
    }

    #[test]
    fn volume_backed_servers_have_an_empty_image() {
        let server: Server =
            serde_json::from_value(json!({"id": "s", "status": "ACTIVE", "image": ""})).unwrap();
        assert!(server.is_volume_backed());
        let server: Server = serde_json::from_value(
            json!({"id": "s", "status": "ACTIVE", "image": {"id": "70a599e0"}}),
        )
        .unwrap();
        assert_eq!(server.image_id(), Some("70a599e0"));
    }
}
