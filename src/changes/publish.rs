//! Handing a committed change to the hubs, which fan it out to the displays.

use std::sync::Arc;

use crate::domain::ids::TenantId;
use crate::views::CommittedChange;
use crate::ws::registry::HubRegistry;

/// After commit: hand the change to the tenant's hub without waiting for the fan-out.
pub(super) fn publish_committed(hubs: &HubRegistry, tenant: TenantId, change: CommittedChange) {
    hubs.publish(tenant, Arc::new(change));
}
