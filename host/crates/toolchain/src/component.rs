//! Turning a core WebAssembly module into a component with the `wit-component` crate (the
//! library behind `wasm-tools component new`), so no extra binary needs installing.

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::ComponentEncoder;

/// The binary's kind, from its preamble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (`\0asm` version 1).
    CoreModule,
    /// A component (`\0asm` version 0x0d, layer 1).
    Component,
    /// Not WebAssembly.
    Unknown,
}

/// Reads the preamble of `bytes`.
pub fn wasm_kind(bytes: &[u8]) -> WasmKind {
    match bytes.get(0..8) {
        Some([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) => WasmKind::CoreModule,
        Some([0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00]) => WasmKind::Component,
        _ => WasmKind::Unknown,
    }
}

/// Encodes the core module `module` (built by wit-bindgen, so it carries its WIT world in a
/// custom section) as a validated component. A module importing WASI preview 1 gets wasmtime
/// 48's preview-1 *reactor* adapter, so the component imports WASI p2 instead (wit-component
/// leaves the adapter out of modules that do not import it).
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    ComponentEncoder::default()
        .validate(true)
        .module(module)
        .map_err(|e| format!("reading the core module: {e:#}"))?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .map_err(|e| format!("adding the WASI preview-1 reactor adapter: {e:#}"))?
        .encode()
        .map_err(|e| format!("encoding the component: {e:#}"))
}
