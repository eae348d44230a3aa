//! The limits of one invocation: the one type, its defaults and its validation, used alike by
//! the service and by `riposte plugin run/test`. The operator sets them per plugin in the
//! `[plugins.limits]` section; the field names below in backquotes are that section's keys.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits of one invocation (`[plugins.limits]`). A key left out keeps its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Instructions (fuel units) the invocation may use (`fuel`, default 1e9).
    pub fuel: u64,
    /// Wall-clock time, host calls included (`wall_clock_ms`, default 10000).
    #[serde(rename = "wall_clock_ms", with = "millis")]
    pub wall_clock: Duration,
    /// Linear memory, in bytes (`memory_bytes`, default 64 MiB).
    pub memory_bytes: usize,
    /// stdout, stderr and log output together, in bytes (`max_output_bytes`, default
    /// 64 KiB); past it the plugin is stopped.
    #[serde(rename = "max_output_bytes")]
    pub output_bytes: usize,
    /// The wasm stack, in bytes (`stack_bytes`, default 512 KiB). The stack limit is
    /// engine-wide: a runtime serving several plugins is built with the largest of theirs
    /// ([`crate::RuntimeConfig::max_stack_bytes`]).
    pub stack_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 1_000_000_000,
            wall_clock: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            output_bytes: 64 << 10,
            stack_bytes: 512 << 10,
        }
    }
}

/// A limit set below the least any plugin can run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value} is too small; the minimum is {min}")]
pub struct LimitTooSmall {
    /// The key of `[plugins.limits]` (`fuel`, `wall_clock_ms`, `memory_bytes`, `stack_bytes`).
    pub key: &'static str,
    /// The value set.
    pub value: u64,
    /// The least allowed.
    pub min: u64,
}

impl Limits {
    /// The limits set too low to run anything (empty when all are usable).
    pub fn validate(&self) -> Vec<LimitTooSmall> {
        let wall_clock_ms = u64::try_from(self.wall_clock.as_millis()).unwrap_or(u64::MAX);
        [
            ("fuel", self.fuel, 1),
            ("wall_clock_ms", wall_clock_ms, 1),
            ("memory_bytes", self.memory_bytes as u64, 65_536),
            ("stack_bytes", self.stack_bytes as u64, 4096),
        ]
        .into_iter()
        .filter(|&(_, value, min)| value < min)
        .map(|(key, value, min)| LimitTooSmall { key, value, min })
        .collect()
    }
}

/// A [`Duration`] as whole milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_usable() {
        assert_eq!(Limits::default().validate(), Vec::new());
    }

    #[test]
    fn limits_below_their_minimum_are_named() {
        let limits = Limits {
            fuel: 0,
            wall_clock: Duration::ZERO,
            memory_bytes: 65_535,
            stack_bytes: 4096,
            ..Limits::default()
        };
        let keys: Vec<_> = limits.validate().iter().map(|p| p.key).collect();
        assert_eq!(keys, ["fuel", "wall_clock_ms", "memory_bytes"]);
        assert_eq!(
            limits.validate()[2].to_string(),
            "65535 is too small; the minimum is 65536"
        );
    }

    #[test]
    fn the_section_keys_round_trip_through_serde() {
        let limits = Limits {
            fuel: 7,
            wall_clock: Duration::from_millis(2500),
            memory_bytes: 1 << 20,
            output_bytes: 100,
            stack_bytes: 8192,
        };
        let json = serde_json::to_value(&limits).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"fuel": 7, "wall_clock_ms": 2500, "memory_bytes": 1048576,
                "max_output_bytes": 100, "stack_bytes": 8192})
        );
        assert_eq!(
            serde_json::from_value::<Limits>(json).expect("parses"),
            limits
        );
        let partial: Limits = serde_json::from_str(r#"{"fuel": 3}"#).expect("parses");
        assert_eq!(
            partial,
            Limits {
                fuel: 3,
                ..Limits::default()
            }
        );
        assert!(serde_json::from_str::<Limits>(r#"{"fuel_max": 3}"#).is_err());
    }
}
