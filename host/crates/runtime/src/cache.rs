//! A cache of precompiled components, authenticated before they are deserialized.
//!
//! `Component::deserialize` trusts its input completely: arbitrary bytes can execute
//! arbitrary code. Every artifact is therefore stored with a tag under a key that only the
//! host can read (BLAKE3 in its keyed mode, a MAC: an interpreter's artifact is 40 MiB, and
//! BLAKE3 tags it several times faster than HMAC-SHA256, which was half of a cached load),
//! and its tag is checked before wasmtime sees the bytes. The cache key covers the engine's
//! compatibility hash and the component's sha256, so an artifact is only ever used by the
//! engine configuration that produced it; the file name also says the tag's format, so one
//! tagged in an older format is not read at all (it is compiled again).

use super::Error;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const TAG_LEN: usize = blake3::OUT_LEN;
const KEY_FILE: &str = "artifact.key";
/// How an artifact's file name ends: `<64 hex digits>.b3.cwasm`. The `b3` names the tag's
/// format, so artifacts of earlier formats (HMAC-SHA256, `<64 hex digits>.cwasm`) are never
/// looked at.
const ARTIFACT_SUFFIX: &str = ".b3.cwasm";

/// A directory of authenticated precompiled components.
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
}

impl ArtifactCache {
    /// Opens (or creates) the cache in `dir`, creating its secret key on first use.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        restrict_permissions(dir, 0o700)?;
        let key_path = dir.join(KEY_FILE);
        let key = match std::fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => bytes.try_into().expect("length checked"),
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a 32-byte key", key_path.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_key(&key_path)?,
            Err(e) => return Err(e),
        };
        remove_old_artifacts(dir);
        Ok(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    /// The artifact file for a component under `engine`.
    pub fn artifact_path(&self, engine: &Engine, component_sha256: &str) -> PathBuf {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.0.update(component_sha256.as_bytes());
        self.dir.join(format!(
            "{}{ARTIFACT_SUFFIX}",
            hex::encode(hasher.0.finalize())
        ))
    }

    /// Loads the precompiled artifact if there is one. A tag that does not verify is an
    /// error and the bytes are never deserialized.
    pub fn load_precompiled(
        &self,
        engine: &Engine,
        plugin: &str,
        component_sha256: &str,
    ) -> Result<Option<Component>, Error> {
        let path = self.artifact_path(engine, component_sha256);
        let stored = match std::fs::read(&path) {
            Ok(stored) => stored,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let refuse = |detail: &str| Error::Artifact {
            plugin: plugin.to_owned(),
            detail: format!("{}: {detail}", path.display()),
        };
        if stored.len() < TAG_LEN {
            return Err(refuse("shorter than its authentication tag"));
        }
        let (tag, artifact) = stored.split_at(TAG_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().expect("split at TAG_LEN");
        // `blake3::Hash` compares in constant time.
        if self.tag(&path, artifact) != blake3::Hash::from_bytes(tag) {
            return Err(refuse(
                "authentication tag does not match: the file was modified or not written by this host",
            ));
        }
        // SAFETY: the bytes carry a valid tag under the host's secret key, so they are an
        // artifact this host serialized itself with a compatible engine configuration.
        let component = unsafe { Component::deserialize(engine, artifact) }
            .map_err(|e| refuse(&format!("{e:#}")))?;
        Ok(Some(component))
    }

    /// Loads the authenticated artifact, or compiles `bytes` and stores a new one. An
    /// artifact that fails authentication is refused, removed and replaced.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        plugin: &str,
        component_sha256: &str,
        bytes: &[u8],
    ) -> Result<Component, Error> {
        match self.load_precompiled(engine, plugin, component_sha256) {
            Ok(Some(component)) => return Ok(component),
            Ok(None) => {}
            Err(refused) => {
                tracing::warn!(plugin, "{refused}; recompiling from the verified component");
                let _ = std::fs::remove_file(self.artifact_path(engine, component_sha256));
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| Error::Compile {
            plugin: plugin.to_owned(),
            detail: format!("{e:#}"),
        })?;
        if let Err(e) = self.store(engine, component_sha256, &component) {
            tracing::warn!(plugin, "cannot write the precompiled artifact: {e}");
        }
        Ok(component)
    }

    fn store(
        &self,
        engine: &Engine,
        component_sha256: &str,
        component: &Component,
    ) -> std::io::Result<()> {
        let artifact = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let path = self.artifact_path(engine, component_sha256);
        let tag = self.tag(&path, &artifact);
        let tmp = path.with_extension("tmp");
        let mut contents = Vec::with_capacity(TAG_LEN + artifact.len());
        contents.extend_from_slice(tag.as_bytes());
        contents.extend_from_slice(&artifact);
        std::fs::write(&tmp, contents)?;
        std::fs::rename(tmp, path)
    }

    /// The tag binds the artifact to its file name (engine hash, component digest and tag
    /// format), so an authentic artifact cannot be swapped in for another component.
    fn tag(&self, path: &Path, artifact: &[u8]) -> blake3::Hash {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let mut mac = blake3::Hasher::new_keyed(&self.key);
        // The name's length first, so that no split of name and artifact collides.
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(artifact);
        mac.finalize()
    }
}

/// Removes the artifacts an earlier release wrote (`<64 hex digits>.cwasm`, tagged with
/// HMAC-SHA256): never read again, and about 40 MiB each for an interpreted rule. Anything
/// else in the directory is left alone; a file that cannot be removed is only logged.
fn remove_old_artifacts(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let old = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".cwasm"))
            .is_some_and(|stem| stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()));
        if old && let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!("cannot remove the old artifact {}: {e}", path.display());
        }
    }
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only used through Hash::hash, never finished")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn new_key(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    std::fs::write(path, key)?;
    restrict_permissions(path, 0o600)?;
    Ok(key)
}

fn restrict_permissions(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
