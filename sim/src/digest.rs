//! MD5 and SHA-512, for Glance's `checksum` and `os_hash_value` of uploaded
//! image data (clients such as openstacksdk verify them).

use md5::{Digest as _, Md5};
use sha2::Sha512;

/// The MD5 digest of `data`, in lower-case hex.
pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

/// The SHA-512 digest of `data`, in lower-case hex.
pub(crate) fn sha512_hex(data: &[u8]) -> String {
    hex(&Sha512::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_known_digests() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            md5_hex(b"The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }

    #[test]
    fn sha512_matches_known_digests() {
        // The same empty-data digest Glance shows for a volume-backed snapshot image.
        assert_eq!(
            sha512_hex(b""),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
        assert_eq!(
            &sha512_hex(b"abc")[..32],
            "ddaf35a193617abacc417349ae204131"
        );
    }
}
