//! The key of a keyed chain: random bytes in an owner-only file outside the audit directory.

use super::Error;
use hmac::{Hmac, Mac};
use riposte_domain::Sha256Digest;
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::Path;

/// The shortest key accepted, in bytes (HMAC-SHA256's output size).
pub const MIN_KEY_BYTES: usize = 32;
/// The longest key accepted, in bytes (HMAC hashes longer keys down anyway).
pub const MAX_KEY_BYTES: usize = 1024;
/// The size of a key made by [`ChainKey::generate`].
const GENERATED_KEY_BYTES: usize = 32;

fn key_error(path: &Path, detail: String) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        detail: format!("audit key file {}: {detail}", path.display()),
    }
}

/// The HMAC key of a keyed audit chain. `Debug` never shows it; there is no `Display` and no
/// `Serialize`: the key is only ever fed to the HMAC.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainKey(Vec<u8>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey([redacted])")
    }
}

impl ChainKey {
    /// A key from its bytes ([`MIN_KEY_BYTES`] to [`MAX_KEY_BYTES`]).
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(format!(
                "a key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, this one is {}; make one with `riposte audit keygen FILE`",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// Reads the key file at `path`: refused, before it is read, when group or others may
    /// read or write it (mode 0600 or stricter is required), and when it is not a key.
    pub fn load(path: &Path) -> Result<Self, Error> {
        riposte_domain::secret::check_owner_only(path, "audit key file", "the audit chain's key")
            .map_err(|detail| Error::Key {
            path: path.to_path_buf(),
            detail,
        })?;
        let fail = |detail: String| key_error(path, detail);
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_KEY_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| fail(format!("cannot read it: {e}")))?;
        Self::new(bytes).map_err(fail)
    }

    /// Creates a new key file at `path` (which must not exist): 32 random bytes from the
    /// kernel, mode 0600 from its creation on.
    pub fn generate(path: &Path) -> Result<(), Error> {
        let fail = |detail: String| key_error(path, detail);
        let mut key = [0u8; GENERATED_KEY_BYTES];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(|e| fail(format!("cannot read random bytes from /dev/urandom: {e}")))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(|e| fail(format!("cannot create it: {e}")))?;
        file.write_all(&key)
            .and_then(|()| file.sync_all())
            .map_err(|e| fail(format!("cannot write it: {e}")))?;
        Ok(())
    }

    /// HMAC-SHA256 of `bytes` under the key.
    pub(crate) fn mac(&self, bytes: &[u8]) -> Sha256Digest {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(bytes);
        Sha256Digest(mac.finalize().into_bytes().into())
    }
}
