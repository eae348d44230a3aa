//! Plugin signatures in the WebAssembly ecosystem's own format (wasmsign2: an Ed25519 signature
//! over the component's sections, embedded as its first custom section, `signature`).
//!
//! A signature names its key by the key id wasmsign2 derives from the public key (12 bytes,
//! shown as 24 hex digits): the *signer* that `plugin inspect` shows. Verification is always
//! against public keys the operator pinned; the key id in a signature is only a label.
//!
//! Secret keys are secrets: [`SigningKey`] has no `Debug`, and no error message carries key
//! material, only the key file's path.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use super::Error;

/// An Ed25519 secret key that signs plugins. Never printed.
pub struct SigningKey {
    sk: wasmsign2::SecretKey,
}

/// A publisher's Ed25519 public key, as the operator pins it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pk: wasmsign2::PublicKey,
}

/// The key id of a public key: what a signature names its signer by.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl PublicKey {
    /// Reads a public key file (PEM, DER or wasmsign2's raw form).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let pk = wasmsign2::PublicKey::from_any(&bytes).map_err(|_| Error::Key {
            path: path.to_owned(),
            detail: "not an Ed25519 public key (PEM, DER or raw)".into(),
        })?;
        Ok(Self {
            pk: pk.attach_default_key_id(),
        })
    }

    /// The key id signatures by this key carry.
    pub fn key_id(&self) -> KeyId {
        KeyId(hex::encode(
            self.pk.key_id().expect("attached at construction"),
        ))
    }

    /// The key in PEM form (public: safe to print and share).
    pub(crate) fn to_pem(&self) -> String {
        self.pk.to_pem()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl SigningKey {
    /// Reads a secret key file (PEM, DER or wasmsign2's raw form). The error names the file,
    /// never its content.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let sk = wasmsign2::SecretKey::from_any(&bytes).map_err(|_| Error::Key {
            path: path.to_owned(),
            detail: "not an Ed25519 secret key (PEM, DER or raw)".into(),
        })?;
        Ok(Self { sk })
    }

    /// A new random key.
    pub fn generate() -> Self {
        Self {
            sk: wasmsign2::KeyPair::generate().sk,
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let pk = wasmsign2::PublicKey {
            pk: self.sk.sk.public_key(),
            key_id: None,
        };
        PublicKey {
            pk: pk.attach_default_key_id(),
        }
    }

    /// Writes a new key pair: the secret key to `secret` (mode 0600, refusing to overwrite a
    /// file) and the public key to `public`, both PEM.
    pub fn write_new_pair(secret: &Path, public: &Path) -> Result<PublicKey, Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let key = Self::generate();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(secret)
            .map_err(|source| Error::Io {
                path: secret.to_owned(),
                source,
            })?;
        file.write_all(key.sk.to_pem().as_bytes())
            .map_err(|source| Error::Io {
                path: secret.to_owned(),
                source,
            })?;
        let public_key = key.public_key();
        std::fs::write(public, public_key.to_pem()).map_err(|source| Error::Io {
            path: public.to_owned(),
            source,
        })?;
        Ok(public_key)
    }

    /// Signs `component` (replacing any signature it had), naming this key's id.
    pub fn sign(&self, component: &[u8]) -> Result<Vec<u8>, Error> {
        let module = parse(component)?;
        let key_id = self.public_key().pk.key_id().cloned();
        let signed = self
            .sk
            .sign(module, key_id.as_ref())
            .map_err(|e| Error::Malformed(format!("signing: {e}")))?;
        serialize(&signed)
    }
}

/// Whether and by whom a component says it is signed, without verifying anything.
pub fn claimed_signers(component: &[u8]) -> Result<Vec<KeyId>, Error> {
    let module = parse(component)?;
    let Some(wasmsign2::Section::Custom(header)) = module.sections.first() else {
        return Ok(Vec::new());
    };
    if !header.is_signature_header() {
        return Ok(Vec::new());
    }
    let data = header
        .signature_data()
        .map_err(|e| Error::Malformed(format!("the signature section: {e}")))?;
    let mut ids: Vec<KeyId> = data
        .signed_hashes_set
        .iter()
        .flat_map(|set| &set.signatures)
        .map(|s| {
            KeyId(
                s.key_id
                    .as_deref()
                    .map(hex::encode)
                    .unwrap_or_else(|| "(no key id)".into()),
            )
        })
        .collect();
    ids.dedup();
    Ok(ids)
}

/// Checks that `component` carries a valid signature by one of `keys`; returns that key's id.
/// Refuses an unsigned component, one signed by another key, and one changed after signing.
pub fn verify(component: &[u8], keys: &[PublicKey]) -> Result<KeyId, Error> {
    let claimed = claimed_signers(component)?;
    if claimed.is_empty() {
        return Err(Error::Unsigned);
    }
    for key in keys {
        match key.pk.verify(&mut Cursor::new(component), None) {
            Ok(()) => return Ok(key.key_id()),
            Err(wasmsign2::WSError::VerificationFailed) | Err(wasmsign2::WSError::NoSignatures) => {
            }
            Err(e) => return Err(Error::Malformed(format!("verifying the signature: {e}"))),
        }
    }
    Err(Error::BadSignature {
        claimed,
        pinned: keys.iter().map(PublicKey::key_id).collect(),
    })
}

/// The component's sections (wasmsign2's parser).
pub(super) fn parse(component: &[u8]) -> Result<wasmsign2::Module, Error> {
    wasmsign2::Module::deserialize(&mut Cursor::new(component))
        .map_err(|e| Error::Malformed(format!("not a WebAssembly module or component: {e}")))
}

/// The bytes of `module`.
pub(super) fn serialize(module: &wasmsign2::Module) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    module
        .serialize(&mut out)
        .map_err(|e| Error::Malformed(format!("writing the component: {e}")))?;
    Ok(out)
}

/// The paths of pinned public key files, loaded.
pub fn load_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, Error> {
    paths.iter().map(|p| PublicKey::from_file(p)).collect()
}
