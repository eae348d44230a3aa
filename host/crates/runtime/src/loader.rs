//! Loading a component: compile (or load an authenticated precompiled artifact), check it
//! against the `rule` world before any call, and keep the pre-instantiated form.

use super::bindings::{PluginInfo, WIT_PACKAGE, WIT_VERSION, WIT_VERSIONS, v0_1, v0_2};
use super::host_api::PluginIdentity;
use super::state::PluginState;
use super::{ArtifactCache, Entry, Error, Runtime};
use riposte_domain::CallError;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use wasmtime::Store;
use wasmtime::component::{Component, types::ComponentItem};

/// A plugin compiled and checked against the world, ready to instantiate.
pub struct LoadedPlugin {
    /// The operator's name for the plugin.
    pub name: String,
    /// Lower-case hex sha256 of the component bytes.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: usize,
    pub(crate) pre: WorldPre,
}

/// A component pre-instantiated against the world of the WIT version it was built for.
#[derive(Clone)]
pub(crate) enum WorldPre {
    /// `riposte:plugin@0.1.0`.
    V0_1(v0_1::RulePre<PluginState>),
    /// `riposte:plugin@0.2.0`.
    V0_2(v0_2::RulePre<PluginState>),
}

impl WorldPre {
    /// The WIT version.
    pub(crate) fn version(&self) -> &'static str {
        match self {
            Self::V0_1(_) => "0.1.0",
            Self::V0_2(_) => "0.2.0",
        }
    }

    /// A fresh instance's `describe`.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<PluginInfo> {
        Ok(match self {
            Self::V0_1(pre) => {
                let rule = pre.instantiate_async(&mut *store).await?;
                rule.call_describe(&mut *store).await?.into()
            }
            Self::V0_2(pre) => {
                let rule = pre.instantiate_async(&mut *store).await?;
                rule.call_describe(&mut *store).await?.into()
            }
        })
    }

    /// A fresh instance's `on-malop` or `on-interval`; the inner error is the plugin's own.
    pub(crate) async fn run(
        &self,
        store: &mut Store<PluginState>,
        entry: Entry<'_>,
    ) -> wasmtime::Result<Result<(), CallError>> {
        Ok(match self {
            Self::V0_1(pre) => {
                let rule = pre.instantiate_async(&mut *store).await?;
                match entry {
                    Entry::Malop(malop) => rule.call_on_malop(&mut *store, &malop.into()).await?,
                    Entry::Interval(now) => rule.call_on_interval(&mut *store, now).await?,
                }
                .map_err(Into::into)
            }
            Self::V0_2(pre) => {
                let rule = pre.instantiate_async(&mut *store).await?;
                match entry {
                    Entry::Malop(malop) => rule.call_on_malop(&mut *store, &malop.into()).await?,
                    Entry::Interval(now) => rule.call_on_interval(&mut *store, now).await?,
                }
                .map_err(Into::into)
            }
        })
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// The version of the WIT package it was built against (`0.1.0`, `0.2.0`).
    pub fn wit_version(&self) -> &'static str {
        self.pre.version()
    }

    /// The identity recorded in every audit record of this plugin.
    pub fn identity(&self) -> PluginIdentity {
        PluginIdentity {
            name: self.name.clone(),
            digest: self.sha256.clone(),
        }
    }
}

/// What `riposte plugin inspect` reports.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub sha256: String,
    pub size: usize,
    /// `component` or `core module`.
    pub kind: &'static str,
    /// Import names with their kind (`instance`, `func`, ...).
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The world the host checked it against.
    pub world: String,
    /// `None` when it matches the world; otherwise why not.
    pub mismatch: Option<String>,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Runtime {
    /// Reads, compiles and checks the plugin at `path`.
    pub fn load_file(&self, name: &str, path: &Path) -> Result<LoadedPlugin, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        self.load(name, &bytes, None)
    }

    /// Compiles `bytes` (or loads its authenticated precompiled artifact from `cache`) and
    /// checks it against the `rule` world: imports, exports and WIT version.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        cache: Option<&ArtifactCache>,
    ) -> Result<LoadedPlugin, Error> {
        check_is_component(name, bytes)?;
        let sha256 = sha256_hex(bytes);
        let component = match cache {
            Some(cache) => cache.load_or_compile(self.engine(), name, &sha256, bytes)?,
            None => compile(self, name, bytes)?,
        };
        let version = self.check_world(name, &component)?;
        prepare_memory_images(name, &component)?;
        let pre = self.pre_instantiate(name, &component, version)?;
        Ok(LoadedPlugin {
            name: name.to_owned(),
            sha256,
            size: bytes.len(),
            pre,
        })
    }

    /// Describes a file without running it: kind, digest, imports, exports, world match.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, Error> {
        let name = "inspected";
        let world_of = |v: &str| format!("{WIT_PACKAGE}/{}@{v}", super::WIT_WORLD);
        let sha256 = sha256_hex(bytes);
        if let Err(e) = check_is_component(name, bytes) {
            return Ok(Inspection {
                sha256,
                size: bytes.len(),
                kind: wasm_kind(bytes),
                imports: vec![],
                exports: vec![],
                world: world_of(WIT_VERSION),
                mismatch: Some(e.to_string()),
            });
        }
        let component = compile(self, name, bytes)?;
        let ty = component.component_type();
        let engine = self.engine();
        let imports = ty
            .imports(engine)
            .map(|(n, item)| format!("{n} ({})", item_kind(&item.ty)))
            .collect();
        let exports = ty
            .exports(engine)
            .map(|(n, item)| format!("{n} ({})", item_kind(&item.ty)))
            .collect();
        let checked = self
            .check_world(name, &component)
            .and_then(|v| self.pre_instantiate(name, &component, v).map(|_| v));
        let (world, mismatch) = match checked {
            Ok(version) => (world_of(version), None),
            Err(e) => (world_of(WIT_VERSION), Some(e.to_string())),
        };
        Ok(Inspection {
            sha256,
            size: bytes.len(),
            kind: "component",
            imports,
            exports,
            world,
            mismatch,
        })
    }

    /// The version of the WIT package the component was built against, read from its
    /// imports; refuses a version this host does not serve, naming it and the served ones. A
    /// component that imports nothing of the package is checked against the current version.
    fn check_world(&self, name: &str, component: &Component) -> Result<&'static str, Error> {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(self.engine())
            .map(|(n, _)| n.to_owned())
            .collect();
        match super::bindings::wit_version_of(imports.iter().map(String::as_str)) {
            Ok(version) => Ok(version.unwrap_or(WIT_VERSION)),
            Err(found) => Err(Error::WitVersion {
                plugin: name.to_owned(),
                package: WIT_PACKAGE,
                found,
            }),
        }
    }

    fn pre_instantiate(
        &self,
        name: &str,
        component: &Component,
        version: &'static str,
    ) -> Result<WorldPre, Error> {
        let mismatch = |e: wasmtime::Error| Error::WorldMismatch {
            plugin: name.to_owned(),
            version,
            detail: format!("{e:#}"),
        };
        let instance_pre = self.linker.instantiate_pre(component).map_err(mismatch)?;
        debug_assert!(WIT_VERSIONS.contains(&version));
        Ok(match version {
            "0.1.0" => WorldPre::V0_1(v0_1::RulePre::new(instance_pre).map_err(mismatch)?),
            _ => WorldPre::V0_2(v0_2::RulePre::new(instance_pre).map_err(mismatch)?),
        })
    }
}

/// Attempts at building a component's copy-on-write memory images.
const IMAGE_ATTEMPTS: u32 = 5;

/// Builds the component's copy-on-write memory images now rather than at its first
/// instantiation. On Linux they live in sealed memfds, and sealing fails with EBUSY while the
/// kernel still holds transient references to the pages just written (seen on a loaded
/// 2-core machine); a failure here would otherwise surface as a "trap" of the first call,
/// so the build is retried a few times with a short backoff.
fn prepare_memory_images(name: &str, component: &Component) -> Result<(), Error> {
    let mut attempt = 1;
    loop {
        match component.initialize_copy_on_write_image() {
            Ok(()) => return Ok(()),
            Err(e) if attempt < IMAGE_ATTEMPTS && is_busy(&e) => {
                tracing::debug!(plugin = name, attempt, "memory image busy, retrying: {e:#}");
                std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
                attempt += 1;
            }
            Err(e) => {
                return Err(Error::MemoryImage {
                    plugin: name.to_owned(),
                    detail: format!("{e:#}"),
                });
            }
        }
    }
}

fn is_busy(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ResourceBusy)
    })
}

fn compile(runtime: &Runtime, name: &str, bytes: &[u8]) -> Result<Component, Error> {
    Component::new(runtime.engine(), bytes).map_err(|e| Error::Compile {
        plugin: name.to_owned(),
        detail: format!("{e:#}"),
    })
}

/// The 8-byte preamble says module or component; anything else is not WebAssembly.
fn wasm_kind(bytes: &[u8]) -> &'static str {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => "component",
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => "core module",
        _ => "not WebAssembly",
    }
}

fn check_is_component(name: &str, bytes: &[u8]) -> Result<(), Error> {
    match wasm_kind(bytes) {
        "component" => Ok(()),
        found => Err(Error::NotAComponent {
            plugin: name.to_owned(),
            found,
        }),
    }
}

fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

#[cfg(test)]
mod tests {
    use super::is_busy;
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_busy_memfd_seal_is_recognised_through_its_context() {
        let sealing = wasmtime::Error::new(Error::from(ErrorKind::ResourceBusy))
            .context("cannot add seals to the memfd");
        assert!(is_busy(&sealing));
        // EBUSY as the kernel reports it (Linux errno 16, as seen in CI).
        #[cfg(target_os = "linux")]
        assert!(is_busy(&wasmtime::Error::new(Error::from_raw_os_error(16))));
        let other = wasmtime::Error::new(Error::from(ErrorKind::OutOfMemory)).context("mmap");
        assert!(!is_busy(&other));
        assert!(!is_busy(&wasmtime::Error::msg("no io error at all")));
    }
}
