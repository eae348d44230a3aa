//! Loading a component: compile (or load an authenticated precompiled artifact), check it
//! against the `rule` world before any call, and keep the pre-instantiated form.

use super::bindings::{RulePre, WIT_PACKAGE, WIT_VERSION};
use super::host_api::PluginIdentity;
use super::state::PluginState;
use super::{ArtifactCache, Error, Runtime};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use wasmtime::component::{Component, types::ComponentItem};

/// A plugin compiled and checked against the world, ready to instantiate.
pub struct LoadedPlugin {
    /// The operator's name for the plugin.
    pub name: String,
    /// Lower-case hex sha256 of the component bytes.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: usize,
    pub(crate) pre: RulePre<PluginState>,
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
        self.check_world(name, &component)?;
        prepare_memory_images(name, &component)?;
        let pre = self.pre_instantiate(name, &component)?;
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
        let world = format!("{WIT_PACKAGE}/{}@{WIT_VERSION}", super::WIT_WORLD);
        let sha256 = sha256_hex(bytes);
        if let Err(e) = check_is_component(name, bytes) {
            return Ok(Inspection {
                sha256,
                size: bytes.len(),
                kind: wasm_kind(bytes),
                imports: vec![],
                exports: vec![],
                world,
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
        let mismatch = self
            .check_world(name, &component)
            .and_then(|()| self.pre_instantiate(name, &component).map(drop))
            .err()
            .map(|e| e.to_string());
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

    /// Refuses components built against another version of the WIT package, naming both.
    fn check_world(&self, name: &str, component: &Component) -> Result<(), Error> {
        let prefix = format!("{WIT_PACKAGE}/");
        for (import, _) in component.component_type().imports(self.engine()) {
            let Some(rest) = import.strip_prefix(&prefix) else {
                continue;
            };
            let found = rest
                .split_once('@')
                .map(|(_, v)| v)
                .unwrap_or("(no version)");
            if found != WIT_VERSION {
                return Err(Error::WitVersion {
                    plugin: name.to_owned(),
                    package: WIT_PACKAGE,
                    found: found.to_owned(),
                    expected: WIT_VERSION,
                });
            }
        }
        Ok(())
    }

    fn pre_instantiate(
        &self,
        name: &str,
        component: &Component,
    ) -> Result<RulePre<PluginState>, Error> {
        let mismatch = |e: wasmtime::Error| Error::WorldMismatch {
            plugin: name.to_owned(),
            detail: format!("{e:#}"),
        };
        let instance_pre = self.linker.instantiate_pre(component).map_err(mismatch)?;
        RulePre::new(instance_pre).map_err(mismatch)
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
