//! The plugin supply chain: signatures (wasmsign2) and packages (a component with its signed
//! manifest). `riposte plugin keygen|sign|verify|package` are built on it, and the service
//! verifies signatures against the operator's pinned keys before it compiles anything.

pub mod package;
mod settings;
pub mod signing;

use std::path::PathBuf;

pub use package::{Manifest, PackageInfo, RequestedGrants};
pub use settings::Signing;
pub use signing::{KeyId, PublicKey, SigningKey};

/// Why signing, verifying or reading a package failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key or component file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file does not hold a usable key (its content is never shown).
    #[error("{}: {detail}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The bytes are not a WebAssembly module or component wasmsign2 can read.
    #[error("{0}")]
    Malformed(String),
    /// A public key is pinned but the component carries no signature.
    #[error("the component is not signed, and a publisher key is pinned for it")]
    Unsigned,
    /// The signature is not valid for any pinned key: another signer, or changed after signing.
    #[error(
        "no valid signature by a pinned key: the signature names {}, the pinned key(s) are {}; the component was signed by someone else or changed after signing",
        list(claimed),
        list(pinned)
    )]
    BadSignature {
        /// The key ids the signature names.
        claimed: Vec<KeyId>,
        /// The key ids of the pinned keys.
        pinned: Vec<KeyId>,
    },
    /// The package manifest is malformed or does not match its component.
    #[error("package: {0}")]
    Package(String),
}

fn list(ids: &[KeyId]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_domain::Sha256Digest;

    /// A small valid component (no imports or exports), as wit-component encodes it.
    fn component() -> Vec<u8> {
        wat::parse_str("(component)").unwrap()
    }

    fn modified(signed: &[u8]) -> Vec<u8> {
        // Append a custom section after signing: the signed sections no longer hash the same.
        let mut module = signing::parse(signed).unwrap();
        module
            .sections
            .push(wasmsign2::Section::Custom(wasmsign2::CustomSection::new(
                "injected".into(),
                b"evil".to_vec(),
            )));
        signing::serialize(&module).unwrap()
    }

    #[test]
    fn a_signed_component_verifies_and_names_its_signer() {
        let key = SigningKey::generate();
        let signed = key.sign(&component()).unwrap();
        let public = key.public_key();
        assert_eq!(
            signing::verify(&signed, std::slice::from_ref(&public)).unwrap(),
            public.key_id()
        );
        assert_eq!(
            signing::claimed_signers(&signed).unwrap(),
            vec![public.key_id()]
        );
        assert_eq!(public.key_id().to_string().len(), 24);
        // Another pinned key besides the right one does not matter.
        let other = SigningKey::generate().public_key();
        assert!(signing::verify(&signed, &[other, public]).is_ok());
    }

    #[test]
    fn unsigned_resigned_and_modified_components_are_refused() {
        let publisher = SigningKey::generate();
        let pinned = [publisher.public_key()];
        let unsigned = component();
        assert!(matches!(
            signing::verify(&unsigned, &pinned),
            Err(Error::Unsigned)
        ));
        assert!(signing::claimed_signers(&unsigned).unwrap().is_empty());

        let signed = publisher.sign(&unsigned).unwrap();
        let mallory = SigningKey::generate();
        let resigned = mallory.sign(&signed).unwrap();
        let err = signing::verify(&resigned, &pinned).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::BadSignature { .. }), "{message}");
        assert!(
            message.contains(&mallory.public_key().key_id().to_string())
                && message.contains(&publisher.public_key().key_id().to_string()),
            "{message}"
        );

        let err = signing::verify(&modified(&signed), &pinned).unwrap_err();
        assert!(matches!(err, Error::BadSignature { .. }), "{err}");
        let mut flipped = signed.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        assert!(signing::verify(&flipped, &pinned).is_err());
        assert!(signing::verify(b"not wasm", &pinned).is_err());
    }

    #[test]
    fn keys_round_trip_through_files_and_secrets_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = (dir.path().join("k.pem"), dir.path().join("k.pub"));
        let written = SigningKey::write_new_pair(&secret, &public).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            SigningKey::write_new_pair(&secret, &public).is_err(),
            "never overwrites"
        );
        let key = SigningKey::from_file(&secret).unwrap();
        let pinned = PublicKey::from_file(&public).unwrap();
        assert_eq!(pinned.key_id(), written.key_id());
        assert_eq!(key.public_key().key_id(), pinned.key_id());
        let secret_text = std::fs::read_to_string(&secret).unwrap();
        // A public key file is not a secret key, and the error does not echo the file.
        let err = SigningKey::from_file(&dir.path().join("k.pub"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("k.pub"));
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
        let err = PublicKey::from_file(&garbage).unwrap_err().to_string();
        assert!(!err.contains("not a key"), "{err}");
        assert!(!format!("{pinned:?}").contains(secret_text.trim()));
    }

    fn manifest(component: &[u8]) -> Manifest {
        Manifest {
            format: package::FORMAT,
            name: "lateral-movement".into(),
            version: "0.1.0".into(),
            description: "d".into(),
            wit: "riposte:plugin/rule@0.1.0".into(),
            component_sha256: package::code_digest(component).unwrap(),
            grants: RequestedGrants {
                operations: vec!["isolate".into(), "add-comment".into()],
                remediation: vec![],
            },
        }
    }

    #[test]
    fn a_package_carries_its_manifest_under_the_signature() {
        let plain = component();
        assert!(package::read(&plain).unwrap().is_none());
        let wanted = manifest(&plain);
        let key = SigningKey::generate();
        let packaged = key.sign(&package::embed(&plain, &wanted).unwrap()).unwrap();
        let info = package::read(&packaged).unwrap().expect("a package");
        assert_eq!(info.manifest, wanted);
        assert_eq!(info.claimed_signers, vec![key.public_key().key_id()]);
        assert_eq!(
            package::code_digest(&packaged).unwrap(),
            Sha256Digest::of(&plain)
        );
        signing::verify(&packaged, &[key.public_key()]).unwrap();
        info.manifest.grants.check().unwrap();
        assert!(
            info.manifest
                .grants
                .operations
                .iter()
                .any(|op| op == "isolate")
        );

        // Re-embedding a manifest that asks for more breaks the signature.
        let mut greedy = wanted.clone();
        greedy.grants.operations.push("set-reputation".into());
        let tampered = package::embed(&packaged, &greedy).unwrap();
        assert!(signing::verify(&tampered, &[key.public_key()]).is_err());
    }

    #[test]
    fn a_package_whose_code_changed_or_manifest_is_bad_is_refused() {
        let plain = component();
        let mut wrong = manifest(&plain);
        wrong.component_sha256 = Sha256Digest::of(b"other code");
        let err = package::read(&package::embed(&plain, &wrong).unwrap()).unwrap_err();
        assert!(err.to_string().contains("changed after packaging"), "{err}");

        let mut unknown = manifest(&plain);
        unknown.grants.operations = vec!["isolat".into()];
        let err = package::read(&package::embed(&plain, &unknown).unwrap()).unwrap_err();
        assert!(err.to_string().contains("isolat"), "{err}");

        let mut module = signing::parse(&plain).unwrap();
        module
            .sections
            .push(wasmsign2::Section::Custom(wasmsign2::CustomSection::new(
                package::SECTION.into(),
                b"{not json".to_vec(),
            )));
        let err = package::read(&signing::serialize(&module).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
    }
}
