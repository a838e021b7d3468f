//! Against a real cloud, the one `STACKSNAP_E2E_CLOUD` names in the clouds.yaml
//! that `OS_CLIENT_CONFIG_FILE` points at. Ignored unless asked for
//! (`-- --include-ignored`); asked for without a cloud, it fails.

use stacksnap::openstack::{
    cinder::{SnapshotFilter, VolumeFilter},
    nova::ServerFilter,
    session::Service,
    version::Microversion,
};

use crate::helpers::real_cloud;

#[tokio::test]
#[ignore = "needs a real OpenStack: set STACKSNAP_E2E_CLOUD and OS_CLIENT_CONFIG_FILE"]
async fn the_clients_authenticate_discover_and_list_on_a_real_cloud() {
    let cloud = real_cloud();
    let session = cloud.session();
    assert!(session.project_id().await.unwrap().is_some());
    let compute = session
        .microversion(Service::Compute)
        .await
        .unwrap()
        .unwrap();
    assert!(compute >= Microversion(2, 45), "compute at {compute}");
    let volume = session
        .microversion(Service::Volume)
        .await
        .unwrap()
        .unwrap();
    assert!(volume >= Microversion(3, 66), "volume at {volume}");

    cloud
        .nova()
        .list_servers(&ServerFilter::default())
        .await
        .unwrap();
    cloud.glance().list_images(&[]).await.unwrap();
    cloud
        .cinder()
        .list_volumes(&VolumeFilter::default())
        .await
        .unwrap();
    cloud
        .cinder()
        .list_snapshots(&SnapshotFilter::default())
        .await
        .unwrap();

    let missing = cloud
        .nova()
        .get_server("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(
        missing.request_id.is_some(),
        "every answer carries x-openstack-request-id"
    );
    let missing = cloud
        .glance()
        .get_image("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let missing = cloud
        .cinder()
        .get_snapshot("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}
