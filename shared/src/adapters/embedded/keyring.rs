//! The `Keyring` port on a local key file: versioned 256-bit master keys, the newest one
//! wrapping new data keys, every older one kept to unwrap what it wrapped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::ports::envelope::{EncryptionContext, canonical_context, open, random_bytes, seal};
use crate::ports::keyring::{DataKey, Keyring, KeyringError};

#[derive(Serialize, Deserialize)]
struct KeyFile {
    current: u32,
    /// Version -> base64 key material.
    keys: BTreeMap<u32, String>,
}

/// A keyring whose master keys live in a file (or only in memory).
pub struct LocalKeyring {
    path: Option<PathBuf>,
    keys: RwLock<(u32, BTreeMap<u32, [u8; 32]>)>,
}

impl std::fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyring").field("path", &self.path).finish_non_exhaustive()
    }
}

impl LocalKeyring {
    /// Opens the key file, creating it with one fresh key if absent.
    pub fn open(path: &Path) -> Result<Self, KeyringError> {
        let keys = match std::fs::read(path) {
            Ok(bytes) => {
                let file: KeyFile =
                    serde_json::from_slice(&bytes).map_err(|e| KeyringError::Crypto(format!("key file: {e}")))?;
                let mut keys = BTreeMap::new();
                for (version, material) in file.keys {
                    let bytes =
                        STANDARD.decode(material).map_err(|e| KeyringError::Crypto(format!("key file: {e}")))?;
                    let key: [u8; 32] =
                        bytes.try_into().map_err(|_| KeyringError::Crypto("key file: a key is not 32 bytes".into()))?;
                    keys.insert(version, key);
                }
                if !keys.contains_key(&file.current) {
                    return Err(KeyringError::Crypto("key file: the current key is missing".into()));
                }
                (file.current, keys)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keyring = Self {
                    path: Some(path.to_owned()),
                    keys: RwLock::new((1, BTreeMap::from([(1, random_bytes()?)]))),
                };
                keyring.save()?;
                return Ok(keyring);
            }
            Err(e) => return Err(KeyringError::unavailable(e)),
        };
        Ok(Self { path: Some(path.to_owned()), keys: RwLock::new(keys) })
    }

    /// A keyring that forgets its keys when dropped, for tests.
    pub fn ephemeral() -> Result<Self, KeyringError> {
        Ok(Self { path: None, keys: RwLock::new((1, BTreeMap::from([(1, random_bytes()?)]))) })
    }

    fn save(&self) -> Result<(), KeyringError> {
        let Some(path) = &self.path else { return Ok(()) };
        let (current, keys) = &*self.keys.read().unwrap_or_else(|p| p.into_inner());
        let file = KeyFile { current: *current, keys: keys.iter().map(|(v, k)| (*v, STANDARD.encode(k))).collect() };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| KeyringError::Crypto(e.to_string()))?;
        // Write beside, then rename: a crash never leaves a half-written key file.
        let temporary = path.with_extension("tmp");
        write_private(&temporary, &bytes).map_err(KeyringError::unavailable)?;
        std::fs::rename(&temporary, path).map_err(KeyringError::unavailable)
    }

    /// Wraps a data key under the current master key: its key id and wrapped form.
    fn wrap(&self, plaintext: &[u8; 32], context: &EncryptionContext) -> Result<(String, Vec<u8>), KeyringError> {
        let (version, master) = {
            let (current, keys) = &*self.keys.read().unwrap_or_else(|p| p.into_inner());
            (*current, keys[current])
        };
        let (nonce, sealed) = seal(&master, &Self::wrap_aad(context), plaintext)?;
        Ok((format!("local:v{version}"), [nonce, sealed].concat()))
    }

    fn wrap_aad(context: &EncryptionContext) -> Vec<u8> {
        let mut aad = b"data-key:".to_vec();
        aad.extend(canonical_context(context));
        aad
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[async_trait]
impl Keyring for LocalKeyring {
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyringError> {
        let plaintext = random_bytes::<32>()?;
        let (key_id, wrapped) = self.wrap(&plaintext, context)?;
        Ok(DataKey { key_id, plaintext, wrapped })
    }

    async fn unwrap_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<[u8; 32], KeyringError> {
        let version: u32 = key_id.strip_prefix("local:v").and_then(|v| v.parse().ok()).ok_or(KeyringError::Decrypt)?;
        let master = {
            let (_, keys) = &*self.keys.read().unwrap_or_else(|p| p.into_inner());
            *keys.get(&version).ok_or(KeyringError::Decrypt)?
        };
        if wrapped.len() < 12 {
            return Err(KeyringError::Decrypt);
        }
        let (nonce, sealed) = wrapped.split_at(12);
        open(&master, &Self::wrap_aad(context), nonce, sealed)?.try_into().map_err(|_| KeyringError::Decrypt)
    }

    async fn rewrap(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<(String, Vec<u8>), KeyringError> {
        let plaintext = self.unwrap_data_key(key_id, wrapped, context).await?;
        self.wrap(&plaintext, context)
    }

    async fn rotate(&self) -> Result<(), KeyringError> {
        let fresh = random_bytes()?;
        {
            let (current, keys) = &mut *self.keys.write().unwrap_or_else(|p| p.into_inner());
            *current += 1;
            keys.insert(*current, fresh);
        }
        self.save()
    }
}
