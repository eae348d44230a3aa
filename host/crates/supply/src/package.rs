//! Plugin packages: one `.wasm` file holding the component and its manifest (name, version,
//! WIT world, the component's digest, the grants it asks for), usually signed.
//!
//! The manifest is a JSON custom section, `riposte-package`, appended to the component; the
//! wasmsign2 signature (the first section) then covers the manifest too, so nobody can change
//! what a signed package says it wants. wasmtime ignores custom sections, so a package loads
//! like any component. `component_sha256` is the digest of the component without the package's
//! sections (manifest and signature), so it names the code whatever signs or repackages it.

use serde::{Deserialize, Serialize};

use super::Error;
use super::signing::{self, KeyId};
use riposte_domain::Sha256Digest;
use riposte_domain::{ActionKind, Operation};

/// The custom section that holds the manifest.
pub(crate) const SECTION: &str = "riposte-package";
/// The manifest format this host writes and reads.
pub const FORMAT: u32 = 1;
/// The largest manifest accepted (it is plugin-supplied data).
pub(crate) const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// What a package says about its plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format (1).
    pub format: u32,
    /// The plugin's name, as its `describe` returns it.
    pub name: String,
    /// The plugin's version, as its `describe` returns it.
    pub version: String,
    /// Its one-line description.
    pub description: String,
    /// The WIT world it was built against, e.g. `riposte:plugin/rule@0.1.0`.
    pub wit: String,
    /// sha256 of the component without the package's sections.
    pub component_sha256: Sha256Digest,
    /// The grants the plugin asks the operator for.
    pub grants: RequestedGrants,
}

/// The grants a package asks for, by the names the operator configuration uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedGrants {
    /// Operations (`isolate`, `add-comment`, ...).
    pub operations: Vec<String>,
    /// Remediation kinds (`kill-process`, ...).
    #[serde(default)]
    pub remediation: Vec<String>,
}

impl RequestedGrants {
    /// Checks that every name is an operation or a remediation kind; the error names the
    /// first unknown one. (The operator configuration reads them into its own grants.)
    pub fn check(&self) -> Result<(), String> {
        if let Some(name) = self
            .operations
            .iter()
            .find(|name| !Operation::ALL.iter().any(|op| op.name() == name.as_str()))
        {
            return Err(format!("unknown operation `{name}`"));
        }
        if let Some(name) = self.remediation.iter().find(|name| {
            ActionKind::from_name(name)
                .and_then(ActionKind::remediation)
                .is_none()
        }) {
            return Err(format!("unknown remediation kind `{name}`"));
        }
        Ok(())
    }
}

/// A package read back: its manifest, the signers it claims, and whether its digest holds.
#[derive(Clone, Debug, Serialize)]
pub struct PackageInfo {
    /// The manifest.
    pub manifest: Manifest,
    /// The key ids its signature names (not verified: verify against pinned keys).
    pub claimed_signers: Vec<KeyId>,
}

/// `component` with `manifest` appended as the `riposte-package` section (replacing one it
/// had), and without a signature (sign the result).
pub fn embed(component: &[u8], manifest: &Manifest) -> Result<Vec<u8>, Error> {
    let mut module = signing::parse(component)?;
    module.sections.retain(|s| !is_package_section(s));
    let json = serde_json::to_vec(manifest).expect("a manifest serializes");
    module
        .sections
        .push(wasmsign2::Section::Custom(wasmsign2::CustomSection::new(
            SECTION.to_owned(),
            json,
        )));
    signing::serialize(&module)
}

/// sha256 of `component` without the package's sections (the manifest and the signature).
pub fn code_digest(component: &[u8]) -> Result<Sha256Digest, Error> {
    let mut module = signing::parse(component)?;
    module.sections.retain(|s| !is_package_section(s));
    Ok(Sha256Digest::of(&signing::serialize(&module)?))
}

fn is_package_section(section: &wasmsign2::Section) -> bool {
    match section {
        wasmsign2::Section::Custom(custom) => {
            custom.name() == SECTION || custom.is_signature_header()
        }
        wasmsign2::Section::Standard(_) => false,
    }
}

/// The package manifest of `component`, checked against the component's own digest; `None`
/// when the component is not a package.
pub fn read(component: &[u8]) -> Result<Option<PackageInfo>, Error> {
    let module = signing::parse(component)?;
    let sections: Vec<&wasmsign2::CustomSection> = module
        .sections
        .iter()
        .filter_map(|s| match s {
            wasmsign2::Section::Custom(c) if c.name() == SECTION => Some(c),
            _ => None,
        })
        .collect();
    let section = match sections.as_slice() {
        [] => return Ok(None),
        [one] => one,
        _ => {
            return Err(Error::Package(
                "more than one riposte-package section".into(),
            ));
        }
    };
    let json = wasmsign2::SectionLike::payload(*section);
    if json.len() > MAX_MANIFEST_BYTES {
        return Err(Error::Package(format!(
            "the manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
            json.len()
        )));
    }
    let manifest: Manifest = serde_json::from_slice(json)
        .map_err(|e| Error::Package(format!("the manifest is not valid: {e}")))?;
    if manifest.format != FORMAT {
        return Err(Error::Package(format!(
            "manifest format {} is not supported (this host reads format {FORMAT})",
            manifest.format
        )));
    }
    manifest
        .grants
        .check()
        .map_err(|e| Error::Package(format!("the manifest's grants: {e}")))?;
    let actual = code_digest(component)?;
    if actual != manifest.component_sha256 {
        return Err(Error::Package(format!(
            "the manifest names component {}, but the component is {actual}: it was changed after packaging",
            manifest.component_sha256
        )));
    }
    Ok(Some(PackageInfo {
        manifest,
        claimed_signers: signing::claimed_signers(component)?,
    }))
}
