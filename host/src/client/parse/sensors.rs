//! `sensors/query`.

use super::{Parsed, boolean, check_status, kind, malformed, millis, object, text};
use crate::client::types::{Sensor, SensorStatus, SensorsPage};
use crate::domain::{MachineGuid, PylumId};
use serde_json::Value;

/// One page of sensors.
pub fn sensors_page(body: &[u8]) -> Parsed<SensorsPage> {
    let map = object(body)?;
    check_status(&map)?;
    let list = match map.get("sensors") {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(other) => {
            return Err(malformed(
                body,
                format!("\"sensors\" should be an array, got {}", kind(other)),
            ));
        }
    };
    let sensors = list
        .iter()
        .map(|s| sensor(body, s))
        .collect::<Parsed<Vec<_>>>()?;
    let total = millis(body, map.get("totalResults"), "totalResults")?.unwrap_or(0);
    Ok(SensorsPage {
        total_results: total.max(0) as u64,
        has_more: boolean(body, map.get("hasMoreResults"), "hasMoreResults")?.unwrap_or(false),
        sensors,
    })
}

fn sensor(body: &[u8], v: &Value) -> Parsed<Sensor> {
    let Value::Object(m) = v else {
        return Err(malformed(
            body,
            format!("a sensor should be an object, got {}", kind(v)),
        ));
    };
    let pylum = text(m.get("pylumId")).ok_or_else(|| malformed(body, "a sensor has no pylumId"))?;
    Ok(Sensor {
        pylum_id: PylumId::new(pylum),
        machine_guid: text(m.get("guid")).map(MachineGuid::new),
        machine_name: text(m.get("machineName")).unwrap_or_default(),
        status: SensorStatus::from_api(&text(m.get("status")).unwrap_or_default()),
        isolated: boolean(body, m.get("isolated"), "isolated")?.unwrap_or(false),
        os_type: text(m.get("osType")).unwrap_or_default(),
        internal_ip: text(m.get("internalIpAddress")),
        group_name: text(m.get("groupName")).filter(|g| !g.is_empty()),
    })
}
