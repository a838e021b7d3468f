//! Glance v2: images.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{
    decode,
    error::OpenStackError,
    session::{Call, Service, Session},
};

/// An image, with its properties flattened as Glance returns them.
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `queued`, `saving`, `active`, `killed`, `deleted`, `pending_delete`, `deactivated`, `importing`, `uploading`.
    pub status: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default, deserialize_with = "super::timestamp::optional")]
    pub created_at: Option<DateTime<Utc>>,
    /// Glance refuses to delete a protected image (403).
    #[serde(default)]
    pub protected: bool,
    /// Every other field: Nova's and our own properties among them.
    #[serde(flatten)]
    pub properties: BTreeMap<String, Value>,
}

/// One entry of a volume-backed snapshot image's `block_device_mapping` property.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockDeviceMapping {
    #[serde(default)]
    pub snapshot_id: Option<String>,
    #[serde(default)]
    pub volume_id: Option<String>,
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub boot_index: Option<i64>,
    #[serde(default)]
    pub volume_size: Option<u64>,
    #[serde(default)]
    pub source_type: Option<String>,
}

impl Image {
    /// A string property.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }

    /// The Cinder snapshots behind a volume-backed server's snapshot image, from
    /// its `block_device_mapping` property (a JSON string); empty for other images.
    ///
    /// # Errors
    /// The property is present but is not a JSON list of mappings.
    pub fn block_device_mapping(&self) -> Result<Vec<BlockDeviceMapping>, String> {
        match self.properties.get("block_device_mapping") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(text)) => serde_json::from_str(text)
                .map_err(|e| format!("unreadable block_device_mapping: {e}")),
            Some(list @ Value::Array(_)) => serde_json::from_value(list.clone())
                .map_err(|e| format!("unreadable block_device_mapping: {e}")),
            Some(other) => Err(format!("unexpected block_device_mapping: {other}")),
        }
    }
}

/// Glance's default `api_limit_max`: a larger `limit` is lowered to it.
const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
struct ImagesPage {
    images: Vec<Image>,
    #[serde(default)]
    next: Option<String>,
}

/// The image API.
#[derive(Debug, Clone, Copy)]
pub struct Glance<'a>(pub(super) &'a Session);

impl Glance<'_> {
    /// Reads one image.
    ///
    /// # Errors
    /// `NotFound` when it does not exist (Nova deletes the image of a failed snapshot).
    pub async fn get_image(&self, id: &str) -> Result<Image, OpenStackError> {
        let call = Call::new(
            Service::Image,
            "get_image",
            Method::GET,
            format!("/v2/images/{}", super::segment(id)),
        );
        let reply = self.0.send(&call).await?;
        decode(&call, &reply)
    }

    /// Lists images whose properties equal `filters` (e.g. `stacksnap_job_id`), following `next` links.
    ///
    /// # Errors
    /// Typed failures of any page.
    pub async fn list_images(
        &self,
        filters: &[(&str, &str)],
    ) -> Result<Vec<Image>, OpenStackError> {
        self.list_images_counted(filters)
            .await
            .map(|(images, _)| images)
    }

    /// Lists the images with these ids, in one call per page: Glance reads
    /// `id=in:a,b,c` as a list (`split_filter_op`, then the `in` operator of
    /// its database API). Returns them with the number of calls made.
    /// Ids Glance does not show (deleted, or not visible to the caller) are
    /// simply absent.
    ///
    /// # Errors
    /// Typed failures of any page.
    pub async fn list_images_by_id(
        &self,
        ids: &[&str],
    ) -> Result<(Vec<Image>, i32), OpenStackError> {
        if ids.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let list = format!("in:{}", ids.join(","));
        let limit = ids.len().clamp(1, MAX_PAGE).to_string();
        self.list_pages(&[("id", &list), ("limit", &limit)]).await
    }

    /// [`Self::list_images`], with the number of calls (pages) it took.
    ///
    /// # Errors
    /// Typed failures of any page.
    pub async fn list_images_counted(
        &self,
        filters: &[(&str, &str)],
    ) -> Result<(Vec<Image>, i32), OpenStackError> {
        let mut query: Vec<(&str, &str)> = filters.to_vec();
        query.push(("limit", "200"));
        self.list_pages(&query).await
    }

    async fn list_pages(
        &self,
        query: &[(&str, &str)],
    ) -> Result<(Vec<Image>, i32), OpenStackError> {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut call =
            Call::new(Service::Image, "list_images", Method::GET, "/v2/images").query(query);
        let mut images = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            let reply = self.0.send(&call).await?;
            let page: ImagesPage = decode(&call, &reply)?;
            images.extend(page.images);
            match page.next {
                // `next` is a path with its query, relative to the endpoint.
                Some(next) if !next.is_empty() => {
                    let (path, query) = next.split_once('?').unwrap_or((&next, ""));
                    call.path = path.to_owned();
                    call.query = url_query(query);
                }
                _ => return Ok((images, calls)),
            }
        }
    }

    /// Deletes an image.
    ///
    /// # Errors
    /// `NotFound` when it is already gone; other typed failures.
    pub async fn delete_image(&self, id: &str) -> Result<(), OpenStackError> {
        let call = Call::new(
            Service::Image,
            "delete_image",
            Method::DELETE,
            format!("/v2/images/{}", super::segment(id)),
        );
        self.0.send(&call).await.map(|_| ())
    }
}

fn url_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_device_mapping_is_read_from_its_json_string() {
        let image: Image = serde_json::from_value(serde_json::json!({
            "id": "i", "status": "active", "size": 0, "bdm_v2": "True", "root_device_name": "/dev/vda",
            "block_device_mapping": "[{\"boot_index\": 0, \"snapshot_id\": \"s1\", \"device_name\": \"/dev/vda\", \"source_type\": \"snapshot\", \"volume_size\": 1}, {\"boot_index\": null, \"snapshot_id\": \"s2\", \"device_name\": \"/dev/vdb\", \"source_type\": \"snapshot\"}]"
        }))
        .unwrap();
        let bdm = image.block_device_mapping().unwrap();
        assert_eq!(bdm.len(), 2);
        assert_eq!(bdm[0].snapshot_id.as_deref(), Some("s1"));
        assert_eq!(bdm[1].boot_index, None);
        assert_eq!(image.property("root_device_name"), Some("/dev/vda"));
    }

    #[test]
    fn images_without_a_mapping_have_none() {
        let image: Image =
            serde_json::from_value(serde_json::json!({"id": "i", "status": "queued"})).unwrap();
        assert!(image.block_device_mapping().unwrap().is_empty());
    }
}
