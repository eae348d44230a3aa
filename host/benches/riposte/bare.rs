//! The floor: a minimal host on bare wasmtime, calling the same component the same way
//! (fresh store and instance from an `InstancePre`, then `on-malop`), with no-op imports.
//! Its own engine, linker and bindings from the same WIT; no policy, audit, limits or
//! output capture.

use riposte_domain as domain;
use std::collections::BTreeMap;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod wit {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "rule",
        exports: { default: async },
    });
}

use wit::riposte::plugin::{
    bookkeeping, config, isolation, kv, log, malops, plugin, remediation, reputation, types,
};
use wit::{Rule, RulePre};

/// How the bare engine is configured.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// Pooling allocator with copy-on-write memory images, as riposte.
    Pooling,
    /// Pooling plus fuel metering and epoch interruption, as riposte (isolates their cost).
    PoolingMetered,
    /// wasmtime's default on-demand allocator.
    OnDemand,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Pooling => "bare wasmtime, pooling",
            Flavor::PoolingMetered => "bare wasmtime, pooling + fuel + epochs",
            Flavor::OnDemand => "bare wasmtime, on-demand allocator",
        }
    }
}

/// Store data of the bare host: WASI (the component imports it) and canned answers.
pub struct BareState {
    wasi: WasiCtx,
    table: ResourceTable,
    config: BTreeMap<String, String>,
    malop: types::Malop,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A bare host for one component.
pub struct BareHost {
    engine: Engine,
    pre: RulePre<BareState>,
    metered: bool,
}

impl BareHost {
    /// Compiles `bytes` in a fresh engine of `flavor` and links it.
    pub fn new(flavor: Flavor, bytes: &[u8]) -> anyhow::Result<Self> {
        let mut c = Config::new();
        let metered = matches!(flavor, Flavor::PoolingMetered);
        if !matches!(flavor, Flavor::OnDemand) {
            // The same pool shape as riposte's engine (runtime/mod.rs), default 64 instances.
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(64)
                .total_core_instances(64 * 32)
                .total_memories(64 * 4)
                .total_tables(64 * 8)
                .total_stacks(64)
                .max_memory_size(256 << 20)
                .max_memories_per_component(16)
                .max_core_instances_per_component(64);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
                .memory_init_cow(true);
        }
        if metered {
            c.consume_fuel(true).epoch_interruption(true);
        }
        let engine = Engine::new(&c)?;
        let mut linker = Linker::<BareState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Rule::add_to_linker::<BareState, HasSelf<BareState>>(&mut linker, |s| s)?;
        let component = Component::new(&engine, bytes)?;
        let pre = RulePre::new(linker.instantiate_pre(&component)?)?;
        Ok(Self {
            engine,
            pre,
            metered,
        })
    }

    /// Fresh store and instance, then `on-malop` with `malop` (converted here, as any host
    /// must), `config` answering `config.get`.
    pub async fn invoke(
        &self,
        malop: &domain::Malop,
        config: &BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let state = BareState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            config: config.clone(),
            malop: to_wit(malop),
        };
        let mut store = Store::new(&self.engine, state);
        if self.metered {
            store.set_fuel(500_000_000)?;
            store.set_epoch_deadline(1_000_000);
        }
        let rule = self.pre.instantiate_async(&mut store).await?;
        let arg = to_wit(malop);
        rule.call_on_malop(&mut store, &arg)
            .await?
            .map_err(|e| anyhow::anyhow!("plugin error: {e:?}"))
    }
}

fn to_wit(m: &domain::Malop) -> types::Malop {
    use domain::{ElementKind as K, ManagementStatus as S, Priority as P};
    types::Malop {
        id: m.id.to_string(),
        kind: match m.kind {
            K::Process => types::ElementKind::Process,
            K::LogonSession => types::ElementKind::LogonSession,
        },
        display_name: m.display_name.clone(),
        detection_type: m.detection_type.clone(),
        activity_types: m.activity_types.clone(),
        management_status: match m.management_status {
            S::Unread => types::ManagementStatus::Unread,
            S::Todo => types::ManagementStatus::Todo,
            S::Open => types::ManagementStatus::Open,
            S::Closed => types::ManagementStatus::Closed,
            S::FalsePositive => types::ManagementStatus::FalsePositive,
            S::Reopened => types::ManagementStatus::Reopened,
            S::Unknown => types::ManagementStatus::Unknown,
        },
        priority: match m.priority {
            P::High => types::Priority::High,
            P::Medium => types::Priority::Medium,
            P::Low => types::Priority::Low,
            P::Unknown => types::Priority::Unknown,
        },
        creation_time: m.creation_time,
        last_update_time: m.last_update_time,
        root_causes: m
            .root_causes
            .iter()
            .map(|r| types::RootCause {
                name: r.name.clone(),
                element_type: r.element_type.clone(),
                hashes: r.hashes.clone(),
            })
            .collect(),
        machines: m
            .machines
            .iter()
            .map(|x| types::Machine {
                guid: x.guid.to_string(),
                name: x.name.clone(),
                pylum_id: x.pylum_id.as_ref().map(ToString::to_string),
                os: x.os.clone(),
                connected: x.connected,
                isolated: x.isolated,
            })
            .collect(),
        suspects: m
            .suspects
            .iter()
            .map(|s| types::Suspect {
                guid: s.guid.to_string(),
                name: s.name.clone(),
                machine_guid: s.machine_guid.to_string(),
                image_sha1: s.image_sha1.clone(),
                autorun_keys: s
                    .autorun_keys
                    .iter()
                    .map(|k| types::RegistryEntry {
                        guid: k.guid.to_string(),
                        name: k.name.clone(),
                    })
                    .collect(),
            })
            .collect(),
        files: m
            .files
            .iter()
            .map(|f| types::FileItem {
                guid: f.guid.to_string(),
                name: f.name.clone(),
                md5: f.md5.clone(),
                sha1: f.sha1.clone(),
                machine_guid: f.machine_guid.to_string(),
            })
            .collect(),
        users: m
            .users
            .iter()
            .map(|u| types::User {
                guid: u.guid.to_string(),
                name: u.name.clone(),
            })
            .collect(),
        ip_addresses: m.ip_addresses.clone(),
        domains: m.domains.clone(),
        unreadable: Vec::new(),
    }
}

fn nothing() -> types::Error {
    types::Error::Failed("bare host: no-op".into())
}

fn receipt() -> Result<types::Receipt, types::Error> {
    Ok(types::Receipt {
        action_id: String::new(),
        disposition: types::Disposition::Shadowed,
        detail: String::new(),
    })
}

impl types::Host for BareState {}
impl plugin::Host for BareState {}

impl malops::Host for BareState {
    fn list_malops(&mut self, _: i64, _: i64) -> Result<Vec<types::Malop>, types::Error> {
        Ok(Vec::new())
    }

    fn get_malop(&mut self, _id: String) -> Result<types::Malop, types::Error> {
        Ok(self.malop.clone())
    }
}

impl remediation::Host for BareState {
    fn remediate(
        &mut self,
        _: Option<String>,
        _: Vec<remediation::Target>,
        _: String,
    ) -> Result<types::Receipt, types::Error> {
        receipt()
    }

    fn status(&mut self, _: String) -> Result<remediation::Progress, types::Error> {
        Err(nothing())
    }
}

impl isolation::Host for BareState {
    fn isolate(
        &mut self,
        _: Option<String>,
        _: Vec<String>,
        _: String,
    ) -> Result<types::Receipt, types::Error> {
        receipt()
    }

    fn unisolate(
        &mut self,
        _: Option<String>,
        _: Vec<String>,
        _: String,
    ) -> Result<types::Receipt, types::Error> {
        receipt()
    }
}

impl reputation::Host for BareState {
    fn set_reputation(
        &mut self,
        _: Vec<reputation::ReputationKey>,
        _: reputation::Verdict,
        _: bool,
        _: String,
    ) -> Result<types::Receipt, types::Error> {
        receipt()
    }

    fn remove_reputation(
        &mut self,
        _: Vec<reputation::ReputationKey>,
        _: String,
    ) -> Result<types::Receipt, types::Error> {
        receipt()
    }
}

impl bookkeeping::Host for BareState {
    fn set_status(&mut self, _: String, _: types::ManagementStatus) -> Result<(), types::Error> {
        Ok(())
    }

    fn add_comment(&mut self, _: String, _: String) -> Result<(), types::Error> {
        Ok(())
    }
}

impl log::Host for BareState {
    fn log(&mut self, _: log::Level, _: String) {}
}

impl kv::Host for BareState {
    fn get(&mut self, _: String) -> Option<Vec<u8>> {
        None
    }

    fn set(&mut self, _: String, _: Vec<u8>) -> Result<(), types::Error> {
        Ok(())
    }

    fn delete(&mut self, _: String) {}
}

impl config::Host for BareState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
