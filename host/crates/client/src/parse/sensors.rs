//! `sensors/query`.

use super::{Parsed, boolean, check_status, kind, malformed, millis, object, text};
use crate::types::{Sensor, SensorStatus, SensorsPage};
use riposte_domain::{MachineGuid, PylumId};
use serde_json::Value;

/// One page of sensors. The reply always names its list (§5.4 of the API notes): one without
/// `sensors` is another kind of answer (an error in a shape not recognised), not "no sensors".
pub fn sensors_page(body: &[u8]) -> Parsed<SensorsPage> {
    let map = object(body)?;
    check_status(&map)?;
    let list = match map.get("sensors") {
        Some(Value::Array(a)) => a.as_slice(),
        Some(Value::Null) => &[],
        None => return Err(malformed(body, "no \"sensors\" list in the reply")),
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
        // Dotted in XS's fixture, 16 characters per FS's schema (§5.4): one form.
        machine_guid: text(m.get("guid")).map(|g| MachineGuid::from_api(&g)),
        machine_name: text(m.get("machineName")).unwrap_or_default(),
        status: SensorStatus::from_api(&text(m.get("status")).unwrap_or_default()),
        isolated: boolean(body, m.get("isolated"), "isolated")?.unwrap_or(false),
        os_type: text(m.get("osType")).unwrap_or_default(),
        internal_ip: text(m.get("internalIpAddress")),
        group_name: text(m.get("groupName")).filter(|g| !g.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::sensors_page;
    use crate::SensorStatus;

    #[test]
    fn sensor_fields_and_both_guid_forms() {
        // §5.4: `guid` is dotted in XS's fixture and 16 characters per FS's schema.
        let body = br#"{"totalResults": 2, "hasMoreResults": false, "sensors": [
            {"pylumId": "PYLUMCLIENT_X_A_01", "guid": "-1845090846.1198775089551518743",
             "machineName": "a", "status": "Online", "isolated": false, "osType": "WINDOWS",
             "internalIpAddress": "10.0.0.1", "groupName": "Finance"},
            {"pylumId": "PYLUMCLIENT_X_B_02", "guid": "kxwWqBCi55eyTiwX", "machineName": "b",
             "status": "Offline", "isolated": "true", "groupName": ""}]}"#;
        let page = sensors_page(body).unwrap();
        let (a, b) = (&page.sensors[0], &page.sensors[1]);
        assert_eq!(
            a.machine_guid.as_ref().unwrap().as_str(),
            "-1845090846.1198775089551518743"
        );
        assert_eq!(
            b.machine_guid.as_ref().unwrap().as_str(),
            "-1826875736.1198775089551518743"
        );
        assert_eq!(
            (a.status, b.status),
            (SensorStatus::Online, SensorStatus::Offline)
        );
        assert!(b.isolated, "a boolean sent as a string");
        assert_eq!(a.group_name.as_deref(), Some("Finance"));
        assert_eq!(b.group_name, None, "an empty group is no group");
        assert_eq!(page.total_results, 2);
    }

    #[test]
    fn a_reply_without_a_sensor_list_is_no_page() {
        let body = br#"{"error": "UnauthorizedRequest", "message": "the user lacks a role"}"#;
        let err = sensors_page(body).unwrap_err().to_string();
        assert!(err.contains("no \"sensors\" list"), "{err}");
        let empty = sensors_page(br#"{"sensors": [], "totalResults": 0}"#).unwrap();
        assert!(empty.sensors.is_empty());
    }
}
