//! Read-only queries: crimes/unified, visualsearch, inbox, mmng/v2, sensors.

use super::data::{SimConnection, SimFile, SimMachine, SimMalop, SimProcess};
use super::render;
use super::reply::Reply;
use super::state::SimQuarantine;
use super::state::{LessThan, OverLimit, SimState};
use riposte_domain::ElementKind;
use serde_json::{Map, Value, json};

fn kind_of(requested: &str) -> Option<ElementKind> {
    match requested {
        "MalopProcess" => Some(ElementKind::Process),
        "MalopLogonSession" => Some(ElementKind::LogonSession),
        _ => None,
    }
}

/// The strings of the array `v[key]` (non-strings skipped); `None` if it is not an array.
pub(super) fn strings<'a>(v: &'a Value, key: &str) -> Option<Vec<&'a str>> {
    let items = v.get(key)?.as_array()?;
    Some(items.iter().filter_map(Value::as_str).collect())
}

fn num(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Whether a Malop passes the time filters of a query path element (`LessThan` only when
/// `less_than` is applied).
fn malop_filters(m: &SimMalop, filters: &Value, less_than: bool) -> bool {
    filters.as_array().into_iter().flatten().all(|f| {
        let value = f.get("values").and_then(|v| v.get(0)).and_then(num);
        let field = match f.get("facetName").and_then(Value::as_str) {
            Some("malopLastUpdateTime") => m.last_update_time,
            Some("creationTime") => m.creation_time,
            _ => return true,
        };
        match (f.get("filterType").and_then(Value::as_str), value) {
            (Some("GreaterThan"), Some(v)) => field > v,
            (Some("LessThan"), Some(v)) if less_than => field < v,
            (Some("Equals"), Some(v)) => field == v,
            _ => true,
        }
    })
}

fn matching_malops<'a>(st: &'a SimState, kind: ElementKind, el: &Value) -> Vec<&'a SimMalop> {
    let guids = strings(el, "guidList");
    let filters = el.get("filters").unwrap_or(&Value::Null);
    st.malops
        .iter()
        .filter(|m| m.kind == kind)
        .filter(|m| guids.as_ref().is_none_or(|g| g.contains(&m.guid.as_str())))
        .filter(|m| malop_filters(m, filters, st.less_than == LessThan::Supported))
        .collect()
}

/// The most elements one element field lists (a query's `perFeatureLimit` can only lower
/// it; `totalValues` says how many there are): the notes' clients ask for 100.
const PER_FEATURE_LIMIT: usize = 100;

/// `crimes/unified`.
pub fn crimes_unified(st: &SimState, v: &Value) -> Reply {
    let Some(el) = v.get("queryPath").and_then(|p| p.get(0)) else {
        return Reply::json(200, &render::failure("queryPath is empty"));
    };
    let requested = el
        .get("requestedType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(kind) = kind_of(requested) else {
        return Reply::json(
            200,
            &render::failure(&format!("Unsupported requestedType {requested}")),
        );
    };
    if el.to_string().contains("\"LessThan\"") {
        match st.less_than {
            LessThan::Refused => {
                return Reply::json(
                    400,
                    &json!({"message": "Unsupported filterType: LessThan", "status": 400}),
                );
            }
            LessThan::Failed => {
                return Reply::json(200, &render::failure("Unsupported filterType: LessThan"));
            }
            LessThan::Supported | LessThan::Ignored => {}
        }
    }
    let overview = v.get("templateContext").and_then(Value::as_str) == Some("OVERVIEW");
    // No paging, only a result limit: past it the rest is left out, and
    // `totalPossibleResults` says how many matched (§6).
    let limit = v
        .get("totalResultLimit")
        .and_then(num)
        .map_or(st.result_limit, |n| {
            (n.max(0) as usize).min(st.result_limit)
        });
    let per_feature = v
        .get("perFeatureLimit")
        .and_then(num)
        .map_or(PER_FEATURE_LIMIT, |n| {
            (n.max(0) as usize).min(PER_FEATURE_LIMIT)
        });
    let mut matching = matching_malops(st, kind, el);
    matching.sort_by(|a, b| a.guid.cmp(&b.guid));
    let total = matching.len();
    if total > limit && st.over_limit == OverLimit::QueryLimitCrossed {
        return Reply::json(
            200,
            &json!({"status": "QUERY_LIMIT_CROSSED", "message": format!("The query matched {total} results, over the limit of {limit}"), "data": null}),
        );
    }
    let results: Map<String, Value> = matching
        .into_iter()
        .take(limit)
        .map(|m| {
            (
                m.guid.clone(),
                render::malop(st, m, (!overview).then_some(per_feature)),
            )
        })
        .collect();
    Reply::json(200, &render::envelope_of(results, total))
}

enum Node<'a> {
    Malop(&'a SimMalop),
    Process(&'a SimProcess),
    File(&'a SimFile),
    Quarantine(SimQuarantine),
    Machine(&'a SimMachine),
    Connection(&'a SimConnection),
    Named(&'a str, &'a str),
}

impl Node<'_> {
    fn render(&self, st: &SimState) -> (String, Value) {
        let element = match self {
            Node::Malop(m) => render::malop(st, m, Some(PER_FEATURE_LIMIT)),
            Node::Process(p) => render::process(st, p),
            Node::File(f) => render::file(st, f),
            Node::Quarantine(q) => render::quarantine(st, q),
            Node::Machine(m) => render::machine(m),
            Node::Connection(c) => render::connection(c),
            Node::Named(g, n) => render::named(g, n),
        };
        (self.guid().to_owned(), element)
    }

    fn name(&self) -> &str {
        match self {
            Node::Malop(m) => &m.name,
            Node::Process(p) => &p.name,
            Node::File(f) => &f.name,
            Node::Quarantine(q) => &q.file.name,
            Node::Machine(m) => &m.name,
            Node::Connection(c) => &c.remote_ip,
            Node::Named(_, n) => n,
        }
    }

    fn guid(&self) -> &str {
        match self {
            Node::Malop(m) => &m.guid,
            Node::Process(p) => &p.guid,
            Node::File(f) => &f.guid,
            Node::Quarantine(q) => &q.guid,
            Node::Machine(m) => &m.guid,
            Node::Connection(c) => &c.guid,
            Node::Named(g, _) => g,
        }
    }
}

fn start<'a>(st: &'a SimState, el: &Value) -> Result<Vec<Node<'a>>, String> {
    let requested = el
        .get("requestedType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(kind) = kind_of(requested) {
        return Ok(matching_malops(st, kind, el)
            .into_iter()
            .map(Node::Malop)
            .collect());
    }
    let nodes: Vec<Node<'a>> = match requested {
        "Machine" => st.machines.iter().map(Node::Machine).collect(),
        "Process" => st
            .malops
            .iter()
            .flat_map(|m| m.suspects.iter().map(Node::Process))
            .collect(),
        "File" => st
            .malops
            .iter()
            .flat_map(|m| m.files.iter().map(Node::File))
            .collect(),
        "QuarantineFile" => st.quarantines().into_iter().map(Node::Quarantine).collect(),
        other => {
            return Err(format!(
                "Unsupported requestedType {other:?} at the start of a query"
            ));
        }
    };
    let guids = strings(el, "guidList");
    Ok(nodes
        .into_iter()
        .filter(|n| guids.as_ref().is_none_or(|g| g.contains(&n.guid())))
        .collect())
}

fn follow<'a>(st: &'a SimState, from: &Node<'a>, feature: &str) -> Result<Vec<Node<'a>>, String> {
    Ok(match (from, feature) {
        (Node::Malop(m), "suspects") => m.suspects.iter().map(Node::Process).collect(),
        (Node::Malop(m), "filesToRemediate") => m.files.iter().map(Node::File).collect(),
        (Node::Malop(m), "affectedMachines") => m
            .machines
            .iter()
            .filter_map(|g| st.machine(g))
            .map(Node::Machine)
            .collect(),
        (Node::Malop(m), "affectedUsers") => {
            m.users.iter().map(|(g, n)| Node::Named(g, n)).collect()
        }
        (Node::Process(p), "connections") => p.connections.iter().map(Node::Connection).collect(),
        (Node::Process(p), "ownerMachine") => st
            .machine(&p.machine)
            .map(Node::Machine)
            .into_iter()
            .collect(),
        (Node::File(f), "ownerMachine") => st
            .machine(&f.machine)
            .map(Node::Machine)
            .into_iter()
            .collect(),
        (Node::Process(p), "hasAutorunEvidence") => {
            p.autoruns.iter().map(|(g, n)| Node::Named(g, n)).collect()
        }
        (_, other) => return Err(format!("Unsupported connection feature {other:?}")),
    })
}

fn name_filter(node: &Node<'_>, filters: &Value) -> bool {
    filters.as_array().into_iter().flatten().all(|f| {
        if f.get("facetName").and_then(Value::as_str) != Some("elementDisplayName") {
            return true;
        }
        let values = strings(f, "values").unwrap_or_default();
        let name = node.name();
        match f.get("filterType").and_then(Value::as_str) {
            Some("ContainsIgnoreCase") => values
                .iter()
                .any(|v| name.to_lowercase().contains(&v.to_lowercase())),
            _ => values.iter().any(|v| name.eq_ignore_ascii_case(v)),
        }
    })
}

/// `visualsearch/query/simple` for the paths the rules use.
pub(crate) fn visual(st: &SimState, v: &Value) -> Reply {
    match visual_nodes(st, v) {
        Ok(nodes) => {
            let results: Map<String, Value> = nodes.iter().map(|n| n.render(st)).collect();
            Reply::json(200, &render::envelope(results))
        }
        Err(msg) => Reply::json(200, &render::failure(&msg)),
    }
}

fn visual_nodes<'a>(st: &'a SimState, v: &Value) -> Result<Vec<Node<'a>>, String> {
    let path = v
        .get("queryPath")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or("queryPath must be a non-empty array")?;
    let mut nodes = start(st, &path[0])?;
    nodes.retain(|n| name_filter(n, &path[0]["filters"]));
    for pair in path.windows(2) {
        let feature = pair[0]
            .pointer("/connectionFeature/featureName")
            .and_then(Value::as_str)
            .ok_or("a query path element without connectionFeature is followed by another")?;
        let mut next = Vec::new();
        for n in &nodes {
            next.extend(follow(st, n, feature)?);
        }
        next.retain(|n| name_filter(n, &pair[1]["filters"]));
        nodes = next;
    }
    Ok(nodes)
}

fn range(v: &Value, from: &str, to: &str) -> (i64, i64) {
    let get = |p: &str, d: i64| v.pointer(p).and_then(num).unwrap_or(d);
    (get(from, i64::MIN), get(to, i64::MAX))
}

/// `detection/inbox`.
pub fn inbox(st: &SimState, v: &Value) -> Reply {
    let (from, to) = range(v, "/startTime", "/endTime");
    let list: Vec<Value> = sorted(st)
        .into_iter()
        .filter(|m| (from..=to).contains(&m.last_update_time))
        .map(|m| render::inbox_model(st, m))
        .collect();
    let online = st.machines.iter().filter(|m| m.online).count();
    Reply::json(
        200,
        &json!({"malops": list, "machineCounterModel": {
        "totalMachines": st.machines.len(), "onlineInfectedCount": online,
        "onlineCleanCount": 0, "offlineInfectedCount": st.machines.len() - online,
        "offlineCleanCount": 0}}),
    )
}

fn sorted(st: &SimState) -> Vec<&SimMalop> {
    let mut all: Vec<&SimMalop> = st.malops.iter().collect();
    all.sort_by(|a, b| (a.last_update_time, &a.guid).cmp(&(b.last_update_time, &b.guid)));
    all
}

/// `mmng/v2/malops` with item-offset paging.
pub fn mmng(st: &SimState, v: &Value) -> Reply {
    let (from, to) = range(v, "/range/from", "/range/to");
    let guid = v.pointer("/search/malop/guid").and_then(Value::as_str);
    let size = v
        .pointer("/pagination/pageSize")
        .and_then(num)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
    let offset = v
        .pointer("/pagination/offset")
        .and_then(num)
        .unwrap_or(0)
        .max(0) as usize;
    let hits: Vec<&SimMalop> = sorted(st)
        .into_iter()
        .filter(|m| (from..=to).contains(&m.last_update_time))
        .filter(|m| guid.is_none_or(|g| g == m.guid))
        .collect();
    let page: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(size)
        .map(|m| render::mmng_model(st, m))
        .collect();
    Reply::json(
        200,
        &json!({"status": "SUCCESS", "message": "", "data": {
        "pageSize": size, "pages": hits.len().div_ceil(size), "offset": offset,
        "totalHits": hits.len(), "token": null, "data": page}}),
    )
}

fn sensor_field<'a>(m: &'a SimMachine, pylum_id: &'a str, field: &str) -> Option<&'a str> {
    Some(match field {
        "machineName" => &m.name,
        "pylumId" => pylum_id,
        "guid" => &m.guid,
        "status" => {
            if m.online {
                "Online"
            } else {
                "Offline"
            }
        }
        "osType" => &m.os,
        _ => return None,
    })
}

fn sensor_matches(m: &SimMachine, pylum_id: &str, filters: &Value) -> bool {
    filters.as_array().into_iter().flatten().all(|f| {
        let field = f.get("fieldName").and_then(Value::as_str).unwrap_or("");
        let Some(actual) = sensor_field(m, pylum_id, field) else {
            return true;
        };
        let values = strings(f, "values").unwrap_or_default();
        match f
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or("Equals")
        {
            "NotEquals" => !values.contains(&actual),
            "EqualsIgnoreCase" => values.iter().any(|v| v.eq_ignore_ascii_case(actual)),
            "ContainsIgnoreCase" => values
                .iter()
                .any(|v| actual.to_lowercase().contains(&v.to_lowercase())),
            _ => values.contains(&actual),
        }
    })
}

/// `sensors/query`: `offset` is a PAGE INDEX (an item offset with
/// [`SimState::sensor_offset_is_item`]).
pub fn sensors(st: &SimState, v: &Value) -> Reply {
    let limit = v.get("limit").and_then(num).unwrap_or(500).clamp(1, 1000) as usize;
    let offset = v.get("offset").and_then(num).unwrap_or(0).max(0) as usize;
    let first = if st.sensor_offset_is_item {
        offset
    } else {
        offset.saturating_mul(limit)
    };
    let filters = v.get("filters").cloned().unwrap_or(Value::Null);
    // Machines without a sensor are not sensors.
    let mut hits: Vec<(&SimMachine, &str)> = st
        .machines
        .iter()
        .filter_map(|m| Some((m, m.pylum_id.as_deref()?)))
        .filter(|(m, pylum_id)| sensor_matches(m, pylum_id, &filters))
        .collect();
    hits.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let list: Vec<Value> = hits
        .iter()
        .skip(first)
        .take(limit)
        .map(|(m, pylum_id)| render::sensor(m, pylum_id))
        .collect();
    let online = st.machines.iter().filter(|m| m.online).count();
    Reply::json(
        200,
        &json!({"totalResults": hits.len(), "hasMoreResults": first.saturating_add(limit) < hits.len(),
        "sensorsStatus": {"@class": ".SensorsStatusOverview", "onlineCount": online,
            "offlineCount": st.machines.len() - online, "staleCount": 0, "archivedCount": 0},
        "sensors": list}),
    )
}
