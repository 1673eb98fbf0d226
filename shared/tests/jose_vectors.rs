//! The JOSE module against the published examples: RFC 7520 §5.4 (ECDH-ES+A128KW with
//! A128GCM on P-384) and §5.5 (ECDH-ES with A128CBC-HS256 on P-256), and the Concat KDF
//! of RFC 7518 Appendix C.

#![allow(clippy::unwrap_used)]
use shared::jose::{DecryptionKey, Jwk, concat_kdf, unb64};

/// RFC 7520 Figure 72, the plaintext of every encryption example.
const FIGURE_72: &str = "You can trust us to stick with you through thick and thin\u{2013}to the bitter end. And you can \
trust us to keep any secret of yours\u{2013}closer than you keep it yourself. But you cannot trust us to let you face \
trouble alone, and go off without a word. We are your friends, Frodo.";

fn key(jwk: &str) -> DecryptionKey {
    let value: serde_json::Value = serde_json::from_str(jwk).unwrap();
    DecryptionKey::from_scalar(value["crv"].as_str().unwrap(), &unb64(value["d"].as_str().unwrap()).unwrap()).unwrap()
}

#[test]
fn rfc_7520_5_4_ecdh_es_a128kw_with_a128gcm_on_p384() {
    let key = key(
        r#"{"kty":"EC","kid":"peregrin.took@tuckborough.example","use":"enc","crv":"P-384","x":"YU4rRUzdmVqmRtWOs2OpDE_T5fsNIodcG8G5FWPrTPMyxpzsSOGaQLpe2FpxBmu2","y":"A8-yxCHxkfBz3hKZfI1jUYMjUhsEveZ9THuwFjH2sCNdtksRJU7D5-SkgaFL1ETP","d":"iTx2pk7wW-GqJkHcEkFQb2EFyYcO7RugmaW3mRrQVAOUiPommT0IdnYK2xDlZh-j"}"#,
    );
    assert_eq!(key.public_jwk().unwrap().x, "YU4rRUzdmVqmRtWOs2OpDE_T5fsNIodcG8G5FWPrTPMyxpzsSOGaQLpe2FpxBmu2");
    let jwe = "eyJhbGciOiJFQ0RILUVTK0ExMjhLVyIsImtpZCI6InBlcmVncmluLnRvb2tAdHVja2Jvcm91Z2guZXhhbXBsZSIsImVwayI6eyJrdHkiOiJFQyIsImNydiI6IlAtMzg0IiwieCI6InVCbzRrSFB3Nmtiang1bDB4b3dyZF9vWXpCbWF6LUdLRlp1NHhBRkZrYllpV2d1dEVLNml1RURzUTZ3TmROZzMiLCJ5Ijoic3AzcDVTR2haVkMyZmFYdW1JLWU5SlUyTW84S3BvWXJGRHI1eVBOVnRXNFBnRXdaT3lRVEEtSmRhWTh0YjdFMCJ9LCJlbmMiOiJBMTI4R0NNIn0.0DJjBXri_kBcC46IkU5_Jk9BqaQeHdv2.mH-G2zVqgztUtnW_.tkZuOO9h95OgHJmkkrfLBisku8rGf6nzVxhRM3sVOhXgz5NJ76oID7lpnAi_cPWJRCjSpAaUZ5dOR3Spy7QuEkmKx8-3RCMhSYMzsXaEwDdXta9Mn5B7cCBoJKB0IgEnj_qfo1hIi-uEkUpOZ8aLTZGHfpl05jMwbKkTe2yK3mjF6SBAsgicQDVCkcY9BLluzx1RmC3ORXaM0JaHPB93YcdSDGgpgBWMVrNU1ErkjcMqMoT_wtCex3w03XdLkjXIuEr2hWgeP-nkUZTPU9EoGSPj6fAS-bSz87RCPrxZdj_iVyC6QWcqAu07WNhjzJEPc4jVntRJ6K53NgPQ5p99l3Z408OUqj4ioYezbS6vTPlQ.WuGzxmcreYjpHGJoa17EBg";
    let (header, plaintext) = key.decrypt(jwe).unwrap();
    assert_eq!(header["kid"], "peregrin.took@tuckborough.example");
    assert_eq!(String::from_utf8(plaintext).unwrap(), FIGURE_72);
}

#[test]
fn rfc_7520_5_5_ecdh_es_with_a128cbc_hs256_on_p256() {
    let key = key(
        r#"{"kty":"EC","kid":"meriadoc.brandybuck@buckland.example","use":"enc","crv":"P-256","x":"Ze2loSV3wrroKUN_4zhwGhCqo3Xhu1td4QjeQ5wIVR0","y":"HlLtdXARY_f55A3fnzQbPcm6hgr34Mp8p-nuzQCE0Zw","d":"r_kHyZ-a06rmxM3yESK84r1otSg-aQcVStkRhA-iCM8"}"#,
    );
    let jwe = "eyJhbGciOiJFQ0RILUVTIiwia2lkIjoibWVyaWFkb2MuYnJhbmR5YnVja0BidWNrbGFuZC5leGFtcGxlIiwiZXBrIjp7Imt0eSI6IkVDIiwiY3J2IjoiUC0yNTYiLCJ4IjoibVBVS1RfYkFXR0hJaGcwVHBqanFWc1AxclhXUXVfdndWT0hIdE5rZFlvQSIsInkiOiI4QlFBc0ltR2VBUzQ2ZnlXdzVNaFlmR1RUMElqQnBGdzJTUzM0RHY0SXJzIn0sImVuYyI6IkExMjhDQkMtSFMyNTYifQ..yc9N8v5sYyv3iGQT926IUg.BoDlwPnTypYq-ivjmQvAYJLb5Q6l-F3LIgQomlz87yW4OPKbWE1zSTEFjDfhU9IPIOSA9Bml4m7iDFwA-1ZXvHteLDtw4R1XRGMEsDIqAYtskTTmzmzNa-_q4F_evAPUmwlO-ZG45Mnq4uhM1fm_D9rBtWolqZSF3xGNNkpOMQKF1Cl8i8wjzRli7-IXgyirlKQsbhhqRzkv8IcY6aHl24j03C-AR2le1r7URUhArM79BY8soZU0lzwI-sD5PZ3l4NDCCei9XkoIAfsXJWmySPoeRb2Ni5UZL4mYpvKDiwmyzGd65KqVw7MsFfI_K767G9C9Azp73gKZD0DyUn1mn0WW5LmyX_yJ-3AROq8p1WZBfG-ZyJ6195_JGG2m9Csg.WCCkNa-x4BeB9hIDIfFuhg";
    let (_, plaintext) = key.decrypt(jwe).unwrap();
    assert_eq!(String::from_utf8(plaintext).unwrap(), FIGURE_72);
    // The same message with one ciphertext byte changed fails its tag.
    let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
    let mut ciphertext = unb64(&parts[3]).unwrap();
    ciphertext[5] ^= 0x80;
    parts[3] = shared::jose::b64(ciphertext);
    assert!(key.decrypt(&parts.join(".")).is_err());
}

#[test]
fn rfc_7518_appendix_c_concat_kdf() {
    // Alice's ephemeral key agrees with Bob's static key; the agreed A128GCM key with
    // apu "Alice" and apv "Bob" is the appendix's "VqqN6vgjbSBcIijNcacQGg".
    let alice = key(
        r#"{"kty":"EC","crv":"P-256","x":"gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0","y":"SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps","d":"0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo"}"#,
    );
    let bob: Jwk = serde_json::from_str(
        r#"{"kty":"EC","crv":"P-256","x":"weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ","y":"e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck"}"#,
    )
    .unwrap();
    let z = alice.agree_with(&bob).unwrap();
    assert_eq!(
        z,
        [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128,
            106, 72, 246, 218, 167, 121, 140, 254, 144, 196
        ]
    );
    let key = concat_kdf(&z, "A128GCM", b"Alice", b"Bob", 16);
    assert_eq!(shared::jose::b64(key), "VqqN6vgjbSBcIijNcacQGg");
}
