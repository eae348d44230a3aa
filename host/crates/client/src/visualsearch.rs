//! `visualsearch/query/simple` queries the rules need, and `get_malop_details`, which
//! assembles a complete Malop from them and from `sensors/query`, or as much of it as the
//! server lets it read.

use super::http::{Call, Safety};
use super::parse;
use super::{Client, Element, Error, Result, Sensor, SensorBatch, SensorStatus};
use riposte_domain::{
    ElementGuid, ElementKind, FileItem, MachineGuid, Malop, MalopId, MalopPart, PylumId,
    RegistryEntry, Suspect,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The most results one visualsearch query asks for, in all and per group (the most some
/// servers allow per group, §5.3).
const QUERY_RESULT_LIMIT: usize = 1000;

/// The most Malops whose cut machine lists one listing completes (one query each).
const MACHINE_COMPLETIONS: usize = 64;

impl Client {
    /// Runs a raw query path; the last path element must carry `"isResult": true`.
    pub(crate) async fn visual_search(
        &self,
        query_path: Value,
        custom_fields: &[&str],
    ) -> Result<Vec<Element>> {
        let query_timeout_ms = self.timeouts.query_timeout().as_millis() as u64;
        let body = json!({"queryPath": query_path, "totalResultLimit": QUERY_RESULT_LIMIT,
            "perGroupLimit": QUERY_RESULT_LIMIT, "perFeatureLimit": 100,
            "templateContext": "SPECIFIC", "queryTimeout": query_timeout_ms,
            "customFields": custom_fields});
        let call = Call::post("/rest/visualsearch/query/simple", body, Safety::Repeatable);
        // A partial answer is a failure here: the Malop's part is read again later.
        let answer = self
            .fetch(call, |body| {
                parse::visual_envelope(body).and_then(parse::VisualAnswer::whole)
            })
            .await?;
        let (elements, matched) = (answer.elements, answer.total);
        // There is no paging (§6): what lies beyond the limits cannot be read, so say so.
        if let Some(matched) = matched.filter(|m| *m > elements.len() as u64) {
            tracing::warn!(
                matched,
                returned = elements.len(),
                "a visualsearch query matched more results than the server returns at once: the rest are not seen"
            );
        }
        Ok(elements)
    }

    /// Elements linked to a Malop through `feature`, of type `result_type`.
    async fn malop_linked(
        &self,
        kind: ElementKind,
        id: &MalopId,
        feature: &str,
        result_type: &str,
        fields: &[&str],
    ) -> Result<Vec<Element>> {
        let path = json!([
            {"requestedType": kind.as_api(), "guidList": [id], "filters": [],
             "connectionFeature": {"elementInstanceType": kind.as_api(), "featureName": feature}},
            {"requestedType": result_type, "filters": [], "isResult": true}]);
        self.visual_search(path, fields).await
    }

    /// Completes the machines of the Malops whose `affectedMachines` the server cut at
    /// `perFeatureLimit` or left out (`cut`: Malop → how many it says there are, 0 when it
    /// did not say) from a visualsearch of
    /// their affected machines (up to [`QUERY_RESULT_LIMIT`]), at most
    /// [`MACHINE_COMPLETIONS`] Malops per call: a rule that isolates a Malop's machines must
    /// not see the first hundred of an outbreak as all of it. A Malop whose query fails keeps
    /// the list it came with, and the log says so.
    pub(crate) async fn complete_machines(
        &self,
        kind: ElementKind,
        malops: &mut [Malop],
        cut: &BTreeMap<MalopId, u64>,
    ) {
        let mut left = MACHINE_COMPLETIONS;
        let mut not_completed = 0usize;
        for malop in malops.iter_mut() {
            let Some(total) = cut.get(&malop.id) else {
                continue;
            };
            if left == 0 {
                not_completed += 1;
                continue;
            }
            left -= 1;
            let read = self
                .malop_linked(
                    kind,
                    &malop.id,
                    "affectedMachines",
                    "Machine",
                    &["elementDisplayName"],
                )
                .await;
            match read {
                Ok(elements) => {
                    let mut known: HashSet<MachineGuid> =
                        malop.machines.iter().map(|m| m.guid.clone()).collect();
                    for e in &elements {
                        if known.insert(MachineGuid::new(e.guid.clone())) {
                            let name = e.first("elementDisplayName").unwrap_or_default();
                            malop.machines.push(parse::bare_machine(&e.guid, name));
                        }
                    }
                    tracing::info!(malop = %malop.id, total, machines = malop.machines.len(), "the server did not list all of the Malop's machines: read them with a visualsearch query");
                }
                Err(error) => {
                    tracing::warn!(malop = %malop.id, total, listed = malop.machines.len(), "the server did not list all of the Malop's machines and the query for them failed: {error}");
                }
            }
        }
        if not_completed > 0 {
            tracing::warn!(
                not_completed,
                "the server listed only some of the machines of {not_completed} more Malops than one listing completes ({MACHINE_COMPLETIONS}): they keep the machines listed"
            );
        }
    }

    /// The suspect processes of a Malop, with their machine, image sha1 and autorun evidence.
    pub(crate) async fn malop_suspects(
        &self,
        kind: ElementKind,
        id: &MalopId,
    ) -> Result<Vec<Suspect>> {
        let fields = [
            "elementDisplayName",
            "ownerMachine",
            "imageFile.sha1String",
            "hasAutorunEvidence",
        ];
        let elements = self
            .malop_linked(kind, id, "suspects", "Process", &fields)
            .await?;
        Ok(elements.iter().map(suspect).collect())
    }

    /// The files to remediate of a Malop, with hashes and machine.
    pub(crate) async fn malop_files(
        &self,
        kind: ElementKind,
        id: &MalopId,
    ) -> Result<Vec<FileItem>> {
        let fields = [
            "elementDisplayName",
            "md5String",
            "sha1String",
            "ownerMachine",
        ];
        let elements = self
            .malop_linked(kind, id, "filesToRemediate", "File", &fields)
            .await?;
        Ok(elements.iter().map(file).collect())
    }

    /// Remote IPs and domains of the connections of a Malop's suspect processes (sorted, unique).
    pub(crate) async fn malop_network(
        &self,
        kind: ElementKind,
        id: &MalopId,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let path = json!([
            {"requestedType": kind.as_api(), "guidList": [id], "filters": [],
             "connectionFeature": {"elementInstanceType": kind.as_api(), "featureName": "suspects"}},
            {"requestedType": "Process", "filters": [],
             "connectionFeature": {"elementInstanceType": "Process", "featureName": "connections"}},
            {"requestedType": "Connection", "filters": [], "isResult": true}]);
        let fields = [
            "elementDisplayName",
            "remoteAddressCanonicalString",
            "domainName",
        ];
        let elements = self.visual_search(path, &fields).await?;
        let mut ips: Vec<String> = elements
            .iter()
            .filter_map(|e| e.first("remoteAddressCanonicalString").map(str::to_owned))
            .collect();
        let mut domains: Vec<String> = elements
            .iter()
            .flat_map(|e| e.all("domainName").iter().cloned())
            .collect();
        for list in [&mut ips, &mut domains] {
            list.retain(|s| !s.is_empty());
            list.sort();
            list.dedup();
        }
        Ok((ips, domains))
    }

    /// A machine's pylumId by host name, through visualsearch (`Machine.pylumId`).
    pub async fn machine_pylum_id(&self, machine_name: &str) -> Result<Option<PylumId>> {
        let path = json!([{"requestedType": "Machine", "isResult": true, "filters": [
            {"facetName": "elementDisplayName", "values": [machine_name], "filterType": "Equals"}]}]);
        let elements = self
            .visual_search(
                path,
                &[
                    "elementDisplayName",
                    "pylumId",
                    "isActiveProbeConnected",
                    "isIsolated",
                ],
            )
            .await?;
        Ok(elements.iter().find_map(|e| {
            e.first("pylumId")
                .filter(|p| !p.is_empty())
                .map(PylumId::new)
        }))
    }

    /// The guid of the quarantined copy of file `file` on machine `machine`, the target
    /// `UNQUARANTINE_FILE` takes: it differs from the original file's guid, and a query of the
    /// Quarantine File element finds it (shared/cybereason-api.md §3.1; TB). The original File
    /// element gives the name and hashes; the copy is the QuarantineFile of that name on the
    /// same machine with the same hash.
    pub async fn quarantined_file(
        &self,
        machine: &MachineGuid,
        file: &ElementGuid,
    ) -> Result<ElementGuid> {
        let fields = [
            "elementDisplayName",
            "md5String",
            "sha1String",
            "ownerMachine",
        ];
        let original = json!([{"requestedType": "File", "guidList": [file], "filters": [],
                               "isResult": true}]);
        let originals = self.visual_search(original, &fields).await?;
        let original = originals
            .iter()
            .find(|e| e.guid == file.as_str())
            .ok_or_else(|| Error::NotFound {
                what: format!("file {file}"),
            })?;
        let name = original.first("elementDisplayName").unwrap_or_default();
        let hashes = [original.first("sha1String"), original.first("md5String")];
        let copies = json!([{"requestedType": "QuarantineFile", "isResult": true, "filters": [
            {"facetName": "elementDisplayName", "values": [name], "filterType": "Equals"}]}]);
        let copies = self.visual_search(copies, &fields).await?;
        copies
            .iter()
            .filter(|c| owner(c) == *machine && c.guid != file.as_str())
            .find(|c| {
                let same = |field: &str, known: Option<&str>| {
                    known.is_some_and(|h| c.first(field).is_some_and(|x| x.eq_ignore_ascii_case(h)))
                };
                same("sha1String", hashes[0]) || same("md5String", hashes[1])
            })
            .map(|c| ElementGuid::new(c.guid.clone()))
            .ok_or_else(|| Error::NotFound {
                what: format!(
                    "the quarantined copy of file {file} ({name}) on machine {machine}; it may be restored or deleted already"
                ),
            })
    }

    /// A complete Malop: the crimes/unified record, its suspects (with autorun evidence),
    /// files, IPs and domains, and machines with pylumId, connection state and group from
    /// sensors. A part whose query fails is left as crimes/unified gave it and listed in
    /// [`Malop::unreadable`]; only a failure of crimes/unified itself is an error.
    pub async fn get_malop_details(&self, id: &MalopId) -> Result<Malop> {
        Ok(self.malop_details(id).await?.malop)
    }

    /// [`Client::get_malop_details`], with the error of each part that could not be read.
    pub async fn malop_details(&self, id: &MalopId) -> Result<Details> {
        let malop = self.get_malop(id).await?;
        let sensors = SensorBatch::of([&malop]);
        Ok(self.read_parts(malop, &MalopPart::ALL, &sensors).await)
    }

    /// Reads the `parts` of a Malop as crimes/unified gave it (see [`MalopPart`]): the
    /// `visualsearch` parts at the same time, the sensors from `sensors` (one query shared
    /// by a batch of Malops). A part that fails keeps what crimes/unified gave and is listed
    /// in [`Malop::unreadable`] and in [`Details::failures`]; a part not in `parts` is not
    /// read, and is listed in [`Malop::unreadable`] only, since nobody asked for it.
    pub async fn read_parts(
        &self,
        mut malop: Malop,
        parts: &[MalopPart],
        sensors: &SensorBatch,
    ) -> Details {
        let (kind, id) = (malop.kind, malop.id.clone());
        let (suspects, files, network, sensors) = tokio::join!(
            if_wanted(parts, MalopPart::Suspects, self.malop_suspects(kind, &id)),
            if_wanted(parts, MalopPart::Files, self.malop_files(kind, &id)),
            if_wanted(parts, MalopPart::Network, self.malop_network(kind, &id)),
            if_wanted(parts, MalopPart::Sensors, sensors.get(self)),
        );
        let mut failures = Vec::new();
        let mut read = |part: MalopPart,
                        result: Option<std::result::Result<(), Arc<Error>>>,
                        malop: &mut Malop| {
            match result {
                None => malop.mark_unreadable(part),
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    tracing::warn!(malop = %malop.id, %part, "{part} unreadable: {error}");
                    malop.mark_unreadable(part);
                    failures.push(PartFailure { part, error });
                }
            }
        };
        let applied = suspects.map(|r| r.map(|s| malop.suspects = s).map_err(Arc::new));
        read(MalopPart::Suspects, applied, &mut malop);
        let applied = files.map(|r| r.map(|f| malop.files = f).map_err(Arc::new));
        read(MalopPart::Files, applied, &mut malop);
        let applied = network.map(|r| {
            r.map(|(ips, domains)| (malop.ip_addresses, malop.domains) = (ips, domains))
                .map_err(Arc::new)
        });
        read(MalopPart::Network, applied, &mut malop);
        let mut machines_read = None;
        let applied = sensors.map(|r| {
            r.map(|read| {
                apply_sensors(&mut malop, &read.sensors);
                machines_read = Some(read.answered);
            })
        });
        read(MalopPart::Sensors, applied, &mut malop);
        Details {
            malop,
            failures,
            machines_read,
        }
    }
}

/// `query`'s answer if `part` is one of `parts`; otherwise `None`, and nothing is sent
/// (a future does nothing until awaited).
async fn if_wanted<T>(
    parts: &[MalopPart],
    part: MalopPart,
    query: impl Future<Output = T>,
) -> Option<T> {
    if parts.contains(&part) {
        Some(query.await)
    } else {
        None
    }
}

/// A Malop read in detail, and why each unreadable part could not be read.
#[derive(Debug)]
pub struct Details {
    /// The Malop; [`Malop::unreadable`] lists the parts in `failures`.
    pub malop: Malop,
    /// One entry per part that could not be read.
    pub failures: Vec<PartFailure>,
    /// When the machines' connection and isolation state was read (the sensors answer was
    /// in hand; this host's monotonic clock); none when the sensors were not read.
    pub machines_read: Option<std::time::Instant>,
}

/// A part of a Malop whose query failed.
#[derive(Debug)]
pub struct PartFailure {
    /// The part.
    pub part: MalopPart,
    /// The query's error (secret-free); shared when one query served several Malops.
    pub error: Arc<Error>,
}

/// Sets the machines' pylumId, connection, isolation, OS and group from their sensors.
fn apply_sensors(malop: &mut Malop, sensors: &[Sensor]) {
    for machine in &mut malop.machines {
        machine.group = sensor_group(sensors, &machine.guid, &machine.name);
        if let Some(s) = matching_sensor(sensors, &machine.guid, &machine.name) {
            machine.pylum_id = Some(s.pylum_id.clone());
            machine.connected = s.is_online();
            machine.isolated = s.isolated;
            if machine.os.is_empty() {
                machine.os = s.os_type.clone();
            }
        }
    }
}

/// The machine's sensor: the one with its guid; failing that, of the sensors with its host
/// name (host names repeat: an archived sensor of a reimaged machine, a stale one), the
/// liveliest, so that a command goes to the sensor that can carry it out.
fn matching_sensor<'a>(
    sensors: &'a [Sensor],
    guid: &MachineGuid,
    name: &str,
) -> Option<&'a Sensor> {
    sensors
        .iter()
        .find(|s| s.machine_guid.as_ref() == Some(guid))
        .or_else(|| {
            sensors
                .iter()
                .filter(|s| s.machine_name.eq_ignore_ascii_case(name))
                .min_by_key(|s| liveliness(s.status))
        })
}

/// The order in which same-named sensors are preferred (lowest first).
fn liveliness(status: SensorStatus) -> u8 {
    match status {
        SensorStatus::Online => 0,
        SensorStatus::Offline => 1,
        SensorStatus::Unknown => 2,
        SensorStatus::Stale => 3,
        SensorStatus::Archived => 4,
    }
}

/// A machine's sensor group, for protection rules, so only when it is certain: the group of
/// the sensor with the machine's guid; failing that, the group every sensor of that host name
/// agrees on (host names repeat, e.g. an archived sensor of a reimaged machine). `None` when
/// unsure, which the policy treats as protected while group rules exist.
fn sensor_group(sensors: &[Sensor], guid: &MachineGuid, name: &str) -> Option<String> {
    if let Some(s) = sensors
        .iter()
        .find(|s| s.machine_guid.as_ref() == Some(guid))
    {
        return s.group_name.clone();
    }
    let mut named = sensors
        .iter()
        .filter(|s| s.machine_name.eq_ignore_ascii_case(name));
    let first = named.next()?.group_name.clone();
    named.all(|s| s.group_name == first).then_some(first)?
}

fn owner(e: &Element) -> MachineGuid {
    MachineGuid::new(
        e.refs("ownerMachine")
            .first()
            .map_or("", |r| r.guid.as_str()),
    )
}

fn suspect(e: &Element) -> Suspect {
    Suspect {
        guid: ElementGuid::new(e.guid.clone()),
        name: e.first("elementDisplayName").unwrap_or_default().to_owned(),
        machine_guid: owner(e),
        image_sha1: e.first("imageFile.sha1String").map(str::to_owned),
        autorun_keys: e
            .refs("hasAutorunEvidence")
            .iter()
            .map(|r| RegistryEntry {
                guid: ElementGuid::new(r.guid.clone()),
                name: r.name.clone(),
            })
            .collect(),
    }
}

fn file(e: &Element) -> FileItem {
    FileItem {
        guid: ElementGuid::new(e.guid.clone()),
        name: e.first("elementDisplayName").unwrap_or_default().to_owned(),
        md5: e.first("md5String").map(str::to_owned),
        sha1: e.first("sha1String").map(str::to_owned),
        machine_guid: owner(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor(guid: &str, name: &str, group: Option<&str>) -> Sensor {
        Sensor {
            pylum_id: PylumId::new(format!("PYLUMCLIENT_X_{name}_{guid}")),
            machine_guid: Some(MachineGuid::new(guid)),
            machine_name: name.into(),
            status: SensorStatus::Online,
            isolated: false,
            os_type: "WINDOWS".into(),
            internal_ip: None,
            group_name: group.map(str::to_owned),
        }
    }

    #[test]
    fn a_group_is_taken_only_when_certain() {
        let dc = sensor("1.1", "DC-01", Some("Domain Controllers"));
        let stale = sensor("2.2", "dc-01", Some("Workstations"));
        let sensors = [stale.clone(), dc.clone()];
        let guid = |g: &str| MachineGuid::new(g);
        assert_eq!(
            sensor_group(&sensors, &guid("1.1"), "DC-01").as_deref(),
            Some("Domain Controllers"),
            "the guid match wins over a same-named sensor"
        );
        assert_eq!(
            sensor_group(&sensors, &guid("9.9"), "DC-01"),
            None,
            "same-named sensors disagree: unknown (protected while group rules exist)"
        );
        let twins = [
            dc.clone(),
            sensor("3.3", "dc-01", Some("Domain Controllers")),
        ];
        assert_eq!(
            sensor_group(&twins, &guid("9.9"), "DC-01").as_deref(),
            Some("Domain Controllers"),
            "same-named sensors that agree"
        );
        assert_eq!(sensor_group(&sensors, &guid("9.9"), "elsewhere"), None);
    }

    #[test]
    fn by_host_name_the_liveliest_sensor_is_taken() {
        let with = |guid: &str, status| Sensor {
            status,
            ..sensor(guid, "WS-7", None)
        };
        let archived = with("1.1", SensorStatus::Archived);
        let stale = with("2.2", SensorStatus::Stale);
        let online = with("3.3", SensorStatus::Online);
        let unknown_guid = MachineGuid::new("9.9");
        let sensors = [archived.clone(), stale.clone(), online.clone()];
        assert_eq!(
            matching_sensor(&sensors, &unknown_guid, "ws-7"),
            Some(&online),
            "the reimaged machine's live sensor, not its archived one"
        );
        let gone = [archived.clone(), stale.clone()];
        assert_eq!(matching_sensor(&gone, &unknown_guid, "WS-7"), Some(&stale));
        assert_eq!(
            matching_sensor(&sensors, &MachineGuid::new("1.1"), "WS-7"),
            Some(&archived),
            "the guid names the sensor, whatever its state"
        );
        assert_eq!(matching_sensor(&sensors, &unknown_guid, "WS-8"), None);
    }
}
