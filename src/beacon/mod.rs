//! The beacon script served at `/js/glimpse.js`, and the 1×1 GIF of the no-JavaScript fallback.
//!
//! `glimpse.js` is the readable source; `glimpse.min.js` is what `scripts/build-beacon.sh` makes
//! from it (pinned minifier, reproducible) and what is embedded and served.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

/// The served bytes.
pub const SCRIPT: &[u8] = include_bytes!("glimpse.min.js");
/// Size goal for the complete script, gzipped.
pub const MAX_GZIP_BYTES: usize = 1024;

/// A transparent 1×1 GIF (43 bytes).
pub const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The script prepared once at start: gzipped copy and strong ETag.
#[derive(Debug, Clone)]
pub struct Script {
    pub plain: bytes::Bytes,
    pub gzip: bytes::Bytes,
    pub etag: String,
}

impl Script {
    pub fn new() -> Script {
        let hash = blake3::hash(SCRIPT);
        Script {
            plain: bytes::Bytes::from_static(SCRIPT),
            gzip: bytes::Bytes::from(gzip(SCRIPT)),
            etag: format!("\"{}\"", &hash.to_hex()[..16]),
        }
    }
}

impl Default for Script {
    fn default() -> Self {
        Script::new()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_stays_within_its_size_goal() {
        let size = gzip(SCRIPT).len();
        assert!(
            size <= MAX_GZIP_BYTES,
            "glimpse.min.js is {size} bytes gzipped, over the {MAX_GZIP_BYTES}-byte goal"
        );
    }

    #[test]
    fn pixel_is_a_gif() {
        assert!(PIXEL.starts_with(b"GIF89a"));
        assert_eq!(PIXEL.len(), 43);
    }
}
