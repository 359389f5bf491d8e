//! Handing a committed change to the hubs, which fan its event out to the displays.

use std::sync::Arc;

use crate::db::events::EventRow;
use crate::domain::ids::TenantId;
use crate::ws::registry::HubRegistry;

/// After commit: hand the event to the tenant's hub without waiting for the fan-out.
pub(super) fn publish_committed(hubs: &HubRegistry, tenant: TenantId, event: EventRow) {
    hubs.publish(tenant, Arc::new(event));
}
