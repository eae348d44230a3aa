//! The control API under `/sim/` (unauthenticated, loopback only).
//!
//! | call | effect |
//! |---|---|
//! | `GET /sim/malops` | ids and update times of all Malops |
//! | `POST /sim/malops` `{"kind": "ransomware"/"known-malware"/"blacklist"/"lateral-movement", "machinesOnline": true, "machine": pylumId, guid or name}` (body optional, every key too) | a new Malop appears now, and its `Malop Created` event is sent → `{"id", "kind", "creationTime", "createdAtUs"}` |
//! | `POST /sim/malops/{id}/touch` | the Malop is updated now, and its `Malop Updated` event is sent → `{"lastUpdateTime"}` |
//! | `GET /sim/syslog` | the event sender's counters (`{"enabled": false}` without `--syslog`) |
//! | `POST /sim/sessions/expire` | every session expires |
//! | `POST /sim/faults` `{"kind": "500"/"429"/"503"/"login-page"/"garbage"/"truncated"/"delay"/"error-body"/"html"/"reset", "count", "path_prefix", "delay_ms", "after_processing", "retry_after_secs"}` | inject a fault for the next `count` requests |
//! | `DELETE /sim/faults` | drop pending faults |
//! | `POST /sim/sensors/{pylumId, guid or name}/offline` (or `/online`) | sensor state |
//! | `POST /sim/investigation/refuse` (or `/allow`) | refuse (or serve again) every `visualsearch` query |
//! | `POST /sim/latency` `{"ms": n}` | every API answer comes `n` ms after its request (0: at once) |
//! | `POST /sim/advance` `{"steps": n, "ms": m}` | remediations move `n` steps; the clock `m` ms |
//! | `GET /sim/requests`, `DELETE /sim/requests` | read / reset the request log (each entry with `received_us`, its wall-clock arrival in µs since the epoch) |
//!
//! `creationTime` is on the server clock (ms, see the crate documentation); `createdAtUs` is
//! the wall-clock time the Malop was created and its event queued (µs since the epoch), to
//! compare with a request's `received_us`: the containment latency a syslog-driven rule gives.

use super::events::epoch_us;
use super::reply::Reply;
use super::state::{Fault, MalopSpec, Shared};
use serde_json::{Value, json};

/// The longest latency the control API sets (a minute).
const MAX_LATENCY_MS: u64 = 60_000;

/// Handles one control request.
pub fn handle(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Reply {
    let segs: Vec<&str> = path.trim_start_matches("/sim/").split('/').collect();
    let mut st = shared.lock();
    let ok = |v: Value| Reply::json(200, &v);
    match (method, segs.as_slice()) {
        ("GET", ["malops"]) => ok(Value::Array(
            st.malops
                .iter()
                .map(|m| json!({"id": m.guid, "kind": m.kind.as_api(), "lastUpdateTime": m.last_update_time}))
                .collect(),
        )),
        ("POST", ["malops"]) => {
            let spec = if body.iter().all(u8::is_ascii_whitespace) {
                Ok(MalopSpec::default())
            } else {
                serde_json::from_slice::<MalopSpec>(body)
            };
            match spec {
                Ok(spec) => match st.create_malop(spec) {
                    Ok(new) => {
                        let kind = st.malop(&new.id).map(|m| m.detection_type.clone());
                        ok(json!({
                            "id": new.id,
                            "kind": kind,
                            "creationTime": new.creation_time,
                            "createdAtUs": epoch_us(new.created_at),
                        }))
                    }
                    Err(e) => Reply::json(404, &json!({"error": e.to_string()})),
                },
                Err(e) => Reply::json(400, &json!({"error": format!("bad Malop: {e}")})),
            }
        }
        ("GET", ["syslog"]) => ok(match st.events.as_ref().map(|e| e.stats()) {
            Some(s) => json!({
                "enabled": true,
                "queued": s.queued,
                "dropped": s.dropped,
                "written": s.sender.written,
                "connectFailures": s.sender.connect_failures,
                "writeFailures": s.sender.write_failures,
            }),
            None => json!({"enabled": false}),
        }),
        ("POST", ["malops", id, "touch"]) => match st.touch_malop(id) {
            Some(t) => ok(json!({"lastUpdateTime": t})),
            None => Reply::json(404, &json!({"error": "no such malop"})),
        },
        ("POST", ["sessions", "expire"]) => {
            st.sessions.clear();
            ok(json!({"expired": true}))
        }
        ("POST", ["faults"]) => match serde_json::from_slice::<Fault>(body) {
            Ok(f) => {
                st.faults.push_back(f);
                ok(json!({"pending": st.faults.len()}))
            }
            Err(e) => Reply::json(400, &json!({"error": format!("bad fault: {e}")})),
        },
        ("DELETE", ["faults"]) => {
            st.faults.clear();
            ok(json!({"pending": 0}))
        }
        ("POST", ["sensors", key, state @ ("online" | "offline")]) => {
            if st.set_online(key, *state == "online") {
                ok(json!({"sensor": key, "status": state}))
            } else {
                Reply::json(404, &json!({"error": "no such sensor"}))
            }
        }
        ("POST", ["investigation", switch @ ("refuse" | "allow")]) => {
            st.refuse_investigation = *switch == "refuse";
            ok(json!({"refuse_investigation": st.refuse_investigation}))
        }
        ("POST", ["latency"]) => match serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("ms").and_then(Value::as_u64))
        {
            Some(ms) if ms <= MAX_LATENCY_MS => {
                st.latency_ms = ms;
                ok(json!({"latency_ms": ms}))
            }
            _ => Reply::json(
                400,
                &json!({"error": format!("give {{\"ms\": n}} with n from 0 to {MAX_LATENCY_MS}")}),
            ),
        },
        ("POST", ["advance"]) => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let steps = v.get("steps").and_then(Value::as_u64).unwrap_or(1);
            st.clock_ms += v.get("ms").and_then(Value::as_i64).unwrap_or(0).max(0);
            st.advance(u32::try_from(steps).unwrap_or(u32::MAX));
            ok(json!({"clock": st.clock_ms}))
        }
        ("GET", ["requests"]) => ok(serde_json::to_value(&st.log).unwrap_or(Value::Null)),
        ("DELETE", ["requests"]) => {
            st.log.clear();
            ok(json!({"cleared": true}))
        }
        _ => Reply::json(404, &json!({"error": "unknown control call"})),
    }
}
