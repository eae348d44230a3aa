//! A component that does not match the `rule` world is refused before any call, with a
//! message that names what is missing or mismatched.

use riposte_runtime::{Error, Runtime, RuntimeConfig};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("the runtime starts")
}

fn load_wat(runtime: &Runtime, wat: &str) -> Result<(), Error> {
    let bytes = wat::parse_str(wat).expect("test WAT parses");
    runtime.load("under-test", &bytes, None).map(drop)
}

#[test]
fn a_component_without_the_exports_is_refused_naming_the_export() {
    let err = load_wat(&runtime(), "(component)").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::WorldMismatch { .. }), "{message}");
    assert!(message.contains("riposte:plugin/rule@0.2.0"), "{message}");
    assert!(
        message.contains("describe"),
        "names the missing export: {message}"
    );
}

#[test]
fn a_component_importing_something_the_host_lacks_is_refused_naming_the_import() {
    let wat = r#"(component (import "evil:net/raw-socket" (instance (export "open" (func)))))"#;
    let err = load_wat(&runtime(), wat).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::WorldMismatch { .. }), "{message}");
    assert!(
        message.contains("evil:net/raw-socket"),
        "names the import: {message}"
    );
}

#[test]
fn a_component_with_a_wrongly_typed_import_is_refused() {
    // `riposte:plugin/log@0.1.0` exists, but `log` here takes no arguments.
    let wat = r#"(component (import "riposte:plugin/log@0.1.0" (instance (export "log" (func)))))"#;
    let err = load_wat(&runtime(), wat).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::WorldMismatch { .. }), "{message}");
    assert!(message.contains("log"), "{message}");
}

#[test]
fn a_component_built_against_another_wit_version_is_refused_naming_the_served_ones() {
    let wat = r#"(component (import "riposte:plugin/log@0.9.0" (instance (export "log" (func)))))"#;
    let err = load_wat(&runtime(), wat).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::WitVersion { .. }), "{message}");
    assert!(
        message.contains("0.9.0") && message.contains("0.2.0") && message.contains("0.1.0"),
        "{message}"
    );
}

#[test]
fn a_component_mixing_two_wit_versions_is_refused() {
    let wat = r#"(component
        (import "riposte:plugin/log@0.1.0" (instance))
        (import "riposte:plugin/kv@0.2.0" (instance)))"#;
    let err = load_wat(&runtime(), wat).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::WitVersion { .. }), "{message}");
    assert!(message.contains("0.1.0 and 0.2.0"), "{message}");
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    let err = load_wat(&runtime(), "(module)").unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotAComponent {
                found: "core module",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn garbage_bytes_are_refused_as_not_webassembly() {
    let err = runtime()
        .load("junk", b"<html>not wasm</html>", None)
        .unwrap_err();
    assert!(err.to_string().contains("not WebAssembly"), "{err}");
}
