//! JOSE for the Singpass FAPI 2.0 client and its simulator, on aws-lc-rs alone: compact
//! JWS with ES256 (RFC 7515, 7518 §3.4), compact JWE with ECDH-ES key agreement, direct or
//! with AES key wrap, and AES-GCM or AES-CBC-HMAC-SHA2 content encryption (RFC 7516,
//! 7518 §4.6, §5.2, §5.3), EC JWKs and their thumbprints (RFC 7517, 7638).
//!
//! Tested against the examples of RFC 7520 and RFC 7518 Appendix C
//! (`shared/tests/jose_vectors.rs`).

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, ECDH_P384, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::cipher::{
    self, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
use aws_lc_rs::hmac;
use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrap};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    self as sig, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("cannot decrypt: wrong key or tampered data")]
    Decrypt,
    #[error("cryptography failed")]
    Crypto,
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| JoseError::Malformed("base64url"))
}

fn random<const N: usize>() -> Result<[u8; N], JoseError> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).map_err(|_| JoseError::Crypto)?;
    Ok(bytes)
}

/// An elliptic-curve public key as a JWK (private parts are never serialised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

impl Jwk {
    fn from_point(crv: &str, point: &[u8]) -> Result<Self, JoseError> {
        let half = (point.len().checked_sub(1)).ok_or(JoseError::Crypto)? / 2;
        if point.first() != Some(&4) || point.len() != 1 + 2 * half {
            return Err(JoseError::Crypto);
        }
        Ok(Self {
            kty: "EC".into(),
            crv: crv.into(),
            x: b64(&point[1..1 + half]),
            y: b64(&point[1 + half..]),
            kid: None,
            use_: None,
            alg: None,
        })
    }

    /// The uncompressed point `0x04 || x || y`, checked against the curve's size.
    pub fn point(&self) -> Result<Vec<u8>, JoseError> {
        let size = match (self.kty.as_str(), self.crv.as_str()) {
            ("EC", "P-256") => 32,
            ("EC", "P-384") => 48,
            _ => return Err(JoseError::Unsupported(format!("key type {} {}", self.kty, self.crv))),
        };
        let (x, y) = (unb64(&self.x)?, unb64(&self.y)?);
        if x.len() != size || y.len() != size {
            return Err(JoseError::Malformed("curve point"));
        }
        Ok([&[4u8][..], &x, &y].concat())
    }

    /// The RFC 7638 thumbprint (SHA-256 of the required members in lexical order).
    pub fn thumbprint(&self) -> String {
        let canonical = format!(r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#, self.crv, self.kty, self.x, self.y);
        b64(digest(&SHA256, canonical.as_bytes()))
    }

    pub fn with(mut self, kid: &str, use_: &str, alg: &str) -> Self {
        self.kid = Some(kid.into());
        self.use_ = Some(use_.into());
        self.alg = Some(alg.into());
        self
    }
}

/// An ES256 signing key.
pub struct SigningKey {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key's PKCS#8 document (to be sealed and kept).
    pub fn generate_pkcs8() -> Result<Vec<u8>, JoseError> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| JoseError::Crypto)
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, JoseError> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map(|pair| Self { pair })
            .map_err(|_| JoseError::Malformed("ES256 private key"))
    }

    /// A fresh key held in memory only (DPoP proofs, the simulator's tests).
    pub fn generate() -> Result<Self, JoseError> {
        Self::from_pkcs8(&Self::generate_pkcs8()?)
    }

    pub fn public_jwk(&self) -> Result<Jwk, JoseError> {
        Jwk::from_point("P-256", self.pair.public_key().as_ref())
    }

    /// A compact JWS of `payload` with `header` (its `alg` is set to ES256).
    pub fn sign(&self, mut header: Map<String, Value>, payload: &[u8]) -> Result<String, JoseError> {
        header.insert("alg".into(), "ES256".into());
        let header = serde_json::to_vec(&header).map_err(|_| JoseError::Crypto)?;
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = self.pair.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| JoseError::Crypto)?;
        Ok(format!("{input}.{}", b64(signature.as_ref())))
    }

    /// [`SigningKey::sign`] of `claims` as JSON.
    pub fn sign_json(&self, header: Map<String, Value>, claims: &impl Serialize) -> Result<String, JoseError> {
        self.sign(header, &serde_json::to_vec(claims).map_err(|_| JoseError::Crypto)?)
    }
}

/// A header map from `key: value` pairs.
pub fn header(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn json_part(part: &str) -> Result<Map<String, Value>, JoseError> {
    serde_json::from_slice(&unb64(part)?).map_err(|_| JoseError::Malformed("JSON header"))
}

/// The protected header of a compact JWS or JWE, unverified (to pick the key by `kid`).
pub fn peek_header(compact: &str) -> Result<Map<String, Value>, JoseError> {
    json_part(compact.split('.').next().unwrap_or_default())
}

/// A JWS that verified: its header and payload.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Map<String, Value>,
    pub payload: Vec<u8>,
}

impl Verified {
    pub fn claims<T: serde::de::DeserializeOwned>(&self) -> Result<T, JoseError> {
        serde_json::from_slice(&self.payload).map_err(|_| JoseError::Malformed("JSON claims"))
    }
}

/// Verifies a compact ES256 JWS with `key`.
pub fn verify(compact: &str, key: &Jwk) -> Result<Verified, JoseError> {
    let parts: Vec<&str> = compact.split('.').collect();
    let [head, body, signature] = parts[..] else { return Err(JoseError::Malformed("a JWS has three parts")) };
    let header = json_part(head)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(JoseError::Unsupported("JWS algorithm other than ES256".into()));
    }
    if key.crv != "P-256" {
        return Err(JoseError::Unsupported("ES256 needs a P-256 key".into()));
    }
    let point = key.point()?;
    sig::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(format!("{head}.{body}").as_bytes(), &unb64(signature)?)
        .map_err(|_| JoseError::BadSignature)?;
    Ok(Verified { header, payload: unb64(body)? })
}

/// How the content key reaches the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// The agreed key is the content key.
    EcdhEs,
    EcdhEsA128Kw,
    EcdhEsA256Kw,
}

impl KeyAlg {
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdhEs => "ECDH-ES",
            Self::EcdhEsA128Kw => "ECDH-ES+A128KW",
            Self::EcdhEsA256Kw => "ECDH-ES+A256KW",
        }
    }

    fn parse(name: &str) -> Result<Self, JoseError> {
        [Self::EcdhEs, Self::EcdhEsA128Kw, Self::EcdhEsA256Kw]
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| JoseError::Unsupported(format!("key management algorithm {name}")))
    }

    fn wrap_len(self) -> Option<usize> {
        match self {
            Self::EcdhEs => None,
            Self::EcdhEsA128Kw => Some(16),
            Self::EcdhEsA256Kw => Some(32),
        }
    }
}

/// How the content is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentAlg {
    A128Gcm,
    A256Gcm,
    A128CbcHs256,
    A256CbcHs512,
}

impl ContentAlg {
    pub fn name(self) -> &'static str {
        match self {
            Self::A128Gcm => "A128GCM",
            Self::A256Gcm => "A256GCM",
            Self::A128CbcHs256 => "A128CBC-HS256",
            Self::A256CbcHs512 => "A256CBC-HS512",
        }
    }

    fn parse(name: &str) -> Result<Self, JoseError> {
        [Self::A128Gcm, Self::A256Gcm, Self::A128CbcHs256, Self::A256CbcHs512]
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| JoseError::Unsupported(format!("content encryption {name}")))
    }

    fn key_len(self) -> usize {
        match self {
            Self::A128Gcm => 16,
            Self::A256Gcm | Self::A128CbcHs256 => 32,
            Self::A256CbcHs512 => 64,
        }
    }

    fn iv_len(self) -> usize {
        match self {
            Self::A128Gcm | Self::A256Gcm => 12,
            Self::A128CbcHs256 | Self::A256CbcHs512 => 16,
        }
    }

    /// Encrypts: (ciphertext, tag).
    fn seal(self, key: &[u8], iv: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JoseError> {
        match self {
            Self::A128Gcm | Self::A256Gcm => {
                let key = gcm_key(self, key)?;
                let nonce = Nonce::try_assume_unique_for_key(iv).map_err(|_| JoseError::Crypto)?;
                let mut buffer = plaintext.to_vec();
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut buffer)
                    .map_err(|_| JoseError::Crypto)?;
                Ok((buffer, tag.as_ref().to_vec()))
            }
            Self::A128CbcHs256 | Self::A256CbcHs512 => {
                let (mac_key, enc_key) = key.split_at(key.len() / 2);
                let iv: [u8; 16] = iv.try_into().map_err(|_| JoseError::Crypto)?;
                let encrypting =
                    PaddedBlockEncryptingKey::cbc_pkcs7(cbc_key(enc_key)?).map_err(|_| JoseError::Crypto)?;
                let mut buffer = plaintext.to_vec();
                encrypting
                    .less_safe_encrypt(&mut buffer, EncryptionContext::Iv128(iv.into()))
                    .map_err(|_| JoseError::Crypto)?;
                let tag = cbc_tag(self, mac_key, aad, &iv, &buffer);
                Ok((buffer, tag))
            }
        }
    }

    fn open(self, key: &[u8], iv: &[u8], aad: &[u8], ciphertext: &[u8], tag: &[u8]) -> Result<Vec<u8>, JoseError> {
        if key.len() != self.key_len() || iv.len() != self.iv_len() {
            return Err(JoseError::Decrypt);
        }
        match self {
            Self::A128Gcm | Self::A256Gcm => {
                let key = gcm_key(self, key)?;
                let nonce = Nonce::try_assume_unique_for_key(iv).map_err(|_| JoseError::Decrypt)?;
                let mut buffer = [ciphertext, tag].concat();
                let plain = key.open_in_place(nonce, Aad::from(aad), &mut buffer).map_err(|_| JoseError::Decrypt)?;
                Ok(plain.to_vec())
            }
            Self::A128CbcHs256 | Self::A256CbcHs512 => {
                let (mac_key, enc_key) = key.split_at(key.len() / 2);
                let expected = cbc_tag(self, mac_key, aad, iv, ciphertext);
                verify_slices_are_equal(&expected, tag).map_err(|_| JoseError::Decrypt)?;
                let iv: [u8; 16] = iv.try_into().map_err(|_| JoseError::Decrypt)?;
                let decrypting =
                    PaddedBlockDecryptingKey::cbc_pkcs7(cbc_key(enc_key)?).map_err(|_| JoseError::Crypto)?;
                let mut buffer = ciphertext.to_vec();
                let plain = decrypting
                    .decrypt(&mut buffer, DecryptionContext::Iv128(iv.into()))
                    .map_err(|_| JoseError::Decrypt)?;
                Ok(plain.to_vec())
            }
        }
    }
}

fn gcm_key(alg: ContentAlg, key: &[u8]) -> Result<LessSafeKey, JoseError> {
    let algorithm = if alg == ContentAlg::A128Gcm { &AES_128_GCM } else { &AES_256_GCM };
    UnboundKey::new(algorithm, key).map(LessSafeKey::new).map_err(|_| JoseError::Decrypt)
}

fn cbc_key(key: &[u8]) -> Result<UnboundCipherKey, JoseError> {
    let algorithm = if key.len() == 16 { &cipher::AES_128 } else { &cipher::AES_256 };
    UnboundCipherKey::new(algorithm, key).map_err(|_| JoseError::Decrypt)
}

/// RFC 7518 §5.2.2.1: the first half of HMAC(MAC_KEY, A || IV || E || AL).
fn cbc_tag(alg: ContentAlg, mac_key: &[u8], aad: &[u8], iv: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let algorithm = if alg == ContentAlg::A128CbcHs256 { hmac::HMAC_SHA256 } else { hmac::HMAC_SHA512 };
    let mut context = hmac::Context::with_key(&hmac::Key::new(algorithm, mac_key));
    for part in [aad, iv, ciphertext, &((aad.len() as u64) * 8).to_be_bytes()[..]] {
        context.update(part);
    }
    let tag = context.sign();
    tag.as_ref()[..mac_key.len()].to_vec()
}

fn curve(crv: &str) -> Result<&'static agreement::Algorithm, JoseError> {
    match crv {
        "P-256" => Ok(&ECDH_P256),
        "P-384" => Ok(&ECDH_P384),
        _ => Err(JoseError::Unsupported(format!("curve {crv}"))),
    }
}

/// RFC 7518 §4.6.2: the Concat KDF with SHA-256.
pub fn concat_kdf(z: &[u8], algorithm_id: &str, apu: &[u8], apv: &[u8], key_len: usize) -> Vec<u8> {
    let with_length = |bytes: &[u8]| [&(bytes.len() as u32).to_be_bytes()[..], bytes].concat();
    let other_info = [
        with_length(algorithm_id.as_bytes()),
        with_length(apu),
        with_length(apv),
        ((key_len * 8) as u32).to_be_bytes().to_vec(),
    ]
    .concat();
    let mut out = Vec::with_capacity(key_len + 32);
    let mut counter = 1u32;
    while out.len() < key_len {
        let input = [&counter.to_be_bytes()[..], z, &other_info].concat();
        out.extend_from_slice(digest(&SHA256, &input).as_ref());
        counter += 1;
    }
    out.truncate(key_len);
    out
}

fn agree(private: &PrivateKey, peer: &Jwk) -> Result<Vec<u8>, JoseError> {
    let point = peer.point()?;
    let peer = UnparsedPublicKey::new(curve(&peer.crv)?, point);
    agreement::agree(private, &peer, JoseError::Decrypt, |z| Ok(z.to_vec()))
}

/// The key (content key for ECDH-ES, key-encryption key otherwise) agreed for `alg`/`enc`.
fn agreed_key(z: &[u8], alg: KeyAlg, enc: ContentAlg, header: &Map<String, Value>) -> Result<Vec<u8>, JoseError> {
    let party = |name: &str| header.get(name).and_then(Value::as_str).map(unb64).transpose();
    let (apu, apv) = (party("apu")?.unwrap_or_default(), party("apv")?.unwrap_or_default());
    Ok(match alg.wrap_len() {
        None => concat_kdf(z, enc.name(), &apu, &apv, enc.key_len()),
        Some(len) => concat_kdf(z, alg.name(), &apu, &apv, len),
    })
}

fn kek(key: &[u8]) -> Result<AesKek, JoseError> {
    let cipher = if key.len() == 16 { &AES_128 } else { &AES_256 };
    AesKek::new(cipher, key).map_err(|_| JoseError::Crypto)
}

/// A static ECDH key that JWEs are encrypted to.
pub struct DecryptionKey {
    crv: &'static str,
    key: PrivateKey,
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKey").field("crv", &self.crv).finish_non_exhaustive()
    }
}

impl DecryptionKey {
    /// A new P-256 key as an RFC 5915 document (to be sealed and kept).
    pub fn generate_der() -> Result<Vec<u8>, JoseError> {
        let key = PrivateKey::generate(&ECDH_P256).map_err(|_| JoseError::Crypto)?;
        let der: EcPrivateKeyRfc5915Der = key.as_der().map_err(|_| JoseError::Crypto)?;
        Ok(der.as_ref().to_vec())
    }

    pub fn from_der(der: &[u8]) -> Result<Self, JoseError> {
        let key = PrivateKey::from_private_key_der(&ECDH_P256, der).map_err(|_| JoseError::Malformed("EC key"))?;
        Ok(Self { crv: "P-256", key })
    }

    /// From the JWK `d` (big-endian scalar) on `crv`.
    pub fn from_scalar(crv: &str, d: &[u8]) -> Result<Self, JoseError> {
        let algorithm = curve(crv)?;
        let crv = if crv == "P-256" { "P-256" } else { "P-384" };
        let key = PrivateKey::from_private_key(algorithm, d).map_err(|_| JoseError::Malformed("EC key"))?;
        Ok(Self { crv, key })
    }

    pub fn generate() -> Result<Self, JoseError> {
        Self::from_der(&Self::generate_der()?)
    }

    /// The shared secret `Z` with `peer` (exposed for the RFC 7518 Appendix C vector).
    pub fn agree_with(&self, peer: &Jwk) -> Result<Vec<u8>, JoseError> {
        agree(&self.key, peer)
    }

    pub fn public_jwk(&self) -> Result<Jwk, JoseError> {
        let public = self.key.compute_public_key().map_err(|_| JoseError::Crypto)?;
        Jwk::from_point(self.crv, public.as_ref())
    }

    /// Decrypts a compact JWE: its protected header and plaintext.
    pub fn decrypt(&self, compact: &str) -> Result<(Map<String, Value>, Vec<u8>), JoseError> {
        let parts: Vec<&str> = compact.split('.').collect();
        let [head, encrypted_key, iv, ciphertext, tag] = parts[..] else {
            return Err(JoseError::Malformed("a JWE has five parts"));
        };
        let header = json_part(head)?;
        let text = |name: &'static str| header.get(name).and_then(Value::as_str).ok_or(JoseError::Malformed(name));
        let (alg, enc) = (KeyAlg::parse(text("alg")?)?, ContentAlg::parse(text("enc")?)?);
        let epk: Jwk = serde_json::from_value(header.get("epk").cloned().ok_or(JoseError::Malformed("epk"))?)
            .map_err(|_| JoseError::Malformed("epk"))?;
        if epk.crv != self.crv {
            return Err(JoseError::Decrypt);
        }
        let agreed = agreed_key(&agree(&self.key, &epk)?, alg, enc, &header)?;
        let cek = match alg.wrap_len() {
            None if encrypted_key.is_empty() => agreed,
            None => return Err(JoseError::Malformed("ECDH-ES carries no encrypted key")),
            Some(_) => {
                let wrapped = unb64(encrypted_key)?;
                let mut out = vec![0u8; wrapped.len()];
                let cek = kek(&agreed)?.unwrap(&wrapped, &mut out).map_err(|_| JoseError::Decrypt)?;
                cek.to_vec()
            }
        };
        let plaintext = enc.open(&cek, &unb64(iv)?, head.as_bytes(), &unb64(ciphertext)?, &unb64(tag)?)?;
        Ok((header, plaintext))
    }
}

/// Encrypts `plaintext` to `recipient` as a compact JWE; `extra` goes into the protected
/// header beside `alg`, `enc` and `epk` (e.g. `kid`, `cty`).
pub fn encrypt(
    plaintext: &[u8],
    recipient: &Jwk,
    alg: KeyAlg,
    enc: ContentAlg,
    mut extra: Map<String, Value>,
) -> Result<String, JoseError> {
    let ephemeral = PrivateKey::generate(curve(&recipient.crv)?).map_err(|_| JoseError::Crypto)?;
    let epk = Jwk::from_point(&recipient.crv, ephemeral.compute_public_key().map_err(|_| JoseError::Crypto)?.as_ref())?;
    extra.insert("alg".into(), alg.name().into());
    extra.insert("enc".into(), enc.name().into());
    extra.insert("epk".into(), serde_json::to_value(&epk).map_err(|_| JoseError::Crypto)?);
    let agreed = agreed_key(&agree(&ephemeral, recipient)?, alg, enc, &extra)?;
    let (cek, encrypted_key) = match alg.wrap_len() {
        None => (agreed, Vec::new()),
        Some(_) => {
            let cek = random::<64>()?[..enc.key_len()].to_vec();
            let mut out = vec![0u8; cek.len() + 8];
            let wrapped = kek(&agreed)?.wrap(&cek, &mut out).map_err(|_| JoseError::Crypto)?.to_vec();
            (cek, wrapped)
        }
    };
    let head = b64(serde_json::to_vec(&extra).map_err(|_| JoseError::Crypto)?);
    let iv = random::<16>()?[..enc.iv_len()].to_vec();
    let (ciphertext, tag) = enc.seal(&cek, &iv, head.as_bytes(), plaintext)?;
    Ok(format!("{head}.{}.{}.{}.{}", b64(encrypted_key), b64(iv), b64(ciphertext), b64(tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_payload_verifies_and_any_change_is_refused() {
        let key = SigningKey::generate().unwrap();
        let jws = key.sign(header(&[("kid", "k1".into())]), b"{\"a\":1}").unwrap();
        let verified = verify(&jws, &key.public_jwk().unwrap()).unwrap();
        assert_eq!(verified.payload, b"{\"a\":1}");
        assert_eq!(verified.header["kid"], "k1");
        let other = SigningKey::generate().unwrap();
        assert_eq!(verify(&jws, &other.public_jwk().unwrap()).unwrap_err(), JoseError::BadSignature);
        let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
        parts[1] = b64(b"{\"a\":2}");
        assert_eq!(verify(&parts.join("."), &key.public_jwk().unwrap()).unwrap_err(), JoseError::BadSignature);
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(b"{}"));
        assert!(matches!(verify(&none, &key.public_jwk().unwrap()), Err(JoseError::Unsupported(_))));
    }

    #[test]
    fn every_algorithm_pair_round_trips_and_another_key_cannot_open_it() {
        let key = DecryptionKey::generate().unwrap();
        let other = DecryptionKey::generate().unwrap();
        let jwk = key.public_jwk().unwrap();
        for alg in [KeyAlg::EcdhEs, KeyAlg::EcdhEsA128Kw, KeyAlg::EcdhEsA256Kw] {
            for enc in [ContentAlg::A128Gcm, ContentAlg::A256Gcm, ContentAlg::A128CbcHs256, ContentAlg::A256CbcHs512] {
                let jwe = encrypt(b"secret person data", &jwk, alg, enc, header(&[("kid", "e1".into())])).unwrap();
                let (head, plain) = key.decrypt(&jwe).unwrap();
                assert_eq!(plain, b"secret person data", "{alg:?} {enc:?}");
                assert_eq!(head["kid"], "e1");
                assert_eq!(other.decrypt(&jwe).unwrap_err(), JoseError::Decrypt, "{alg:?} {enc:?}");
                let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
                let mut tag = unb64(&parts[4]).unwrap();
                tag[0] ^= 1;
                parts[4] = b64(tag);
                assert_eq!(key.decrypt(&parts.join(".")).unwrap_err(), JoseError::Decrypt, "{alg:?} {enc:?}");
            }
        }
    }

    #[test]
    fn a_key_survives_its_der_form_and_thumbprints_follow_rfc_7638_member_order() {
        let der = DecryptionKey::generate_der().unwrap();
        let (a, b) = (DecryptionKey::from_der(&der).unwrap(), DecryptionKey::from_der(&der).unwrap());
        assert_eq!(a.public_jwk().unwrap(), b.public_jwk().unwrap());
        let jwk = Jwk::from_point("P-256", &[[4u8].as_slice(), &[1u8; 32], &[2u8; 32]].concat()).unwrap();
        let expected =
            b64(digest(&SHA256, format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, jwk.x, jwk.y).as_bytes()));
        assert_eq!(jwk.thumbprint(), expected);
        assert_eq!(jwk.clone().with("k", "sig", "ES256").thumbprint(), expected);
    }
}
