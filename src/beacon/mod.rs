//! The beacon scripts and the 1×1 GIF of the no-JavaScript fallback.
//!
//! `beacon.js` is the one readable source; `scripts/build-beacon.sh` makes the three served
//! builds from it (pinned minifier, reproducible), which are embedded here:
//!
//! - `/js/glimpse.js`: Glimpse's own script, configured by `data-*` attributes;
//! - `/js/glimpse.engagement.js`: the same, measuring engagement (what `data-engagement` loads);
//! - Plausible's names (`/js/script.js`, `/js/plausible.js`, `/js/script.hash.outbound-links.js`,
//!   ...): one build, told the extensions in the requested name, so it behaves as that variant.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use flate2::Compression;
use flate2::write::GzEncoder;

/// `/js/glimpse.js`.
pub const SCRIPT: &[u8] = include_bytes!("glimpse.min.js");
/// `/js/glimpse.engagement.js`.
pub const ENGAGEMENT_SCRIPT: &[u8] = include_bytes!("glimpse.engagement.min.js");
/// The Plausible-compatible build, before its extensions are filled in.
const PLAUSIBLE_SCRIPT: &str = include_str!("plausible.min.js");
/// Where the Plausible build reads its extensions (a global the build leaves unresolved).
const EXTENSIONS_SLOT: &str = "__GLIMPSE_EXTENSIONS__";
/// Size goal for `/js/glimpse.js`, gzipped.
pub const MAX_GZIP_BYTES: usize = 1024;

/// The script extensions Plausible documents, in any order and combination.
pub const EXTENSIONS: [&str; 10] = [
    "hash",
    "outbound-links",
    "file-downloads",
    "tagged-events",
    "revenue",
    "pageview-props",
    "exclusions",
    "local",
    "manual",
    "compat",
];
/// Names Plausible accepts and ignores (its retired page-leave experiment).
const IGNORED_EXTENSIONS: &[&str] = &["pageleave"];
/// File-name stems Plausible serves its script under.
const PLAUSIBLE_STEMS: &[&str] = &["script", "plausible", "analytics"];

/// A transparent 1×1 GIF (43 bytes).
pub const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// A script prepared once: gzipped copy and strong ETag.
#[derive(Debug, Clone)]
pub struct Script {
    pub plain: bytes::Bytes,
    pub gzip: bytes::Bytes,
    pub etag: String,
}

impl Script {
    /// `/js/glimpse.js`.
    pub fn new() -> Script {
        Script::of(bytes::Bytes::from_static(SCRIPT))
    }

    pub fn of(plain: bytes::Bytes) -> Script {
        let hash = blake3::hash(&plain);
        Script {
            gzip: bytes::Bytes::from(gzip(&plain)),
            plain,
            etag: format!("\"{}\"", &hash.to_hex()[..16]),
        }
    }
}

impl Default for Script {
    fn default() -> Self {
        Script::new()
    }
}

/// Why a `/js/` path names no script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoScript {
    #[error("no such script")]
    Unknown,
    #[error("unknown script extension `{0}`; the extensions are: {list}", list = EXTENSIONS.join(", "))]
    UnknownExtension(String),
    #[error("script extension `{0}` is named twice")]
    Repeated(String),
}

/// Every script the collector serves; Plausible's variants are prepared on first request
/// (at most 2^10 of them, a few kilobytes each).
#[derive(Debug)]
pub struct Scripts {
    glimpse: Arc<Script>,
    engagement: Arc<Script>,
    plausible: Mutex<HashMap<u16, Arc<Script>>>,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            glimpse: Arc::new(Script::new()),
            engagement: Arc::new(Script::of(bytes::Bytes::from_static(ENGAGEMENT_SCRIPT))),
            plausible: Mutex::new(HashMap::new()),
        }
    }
}

impl Scripts {
    /// The script at `/js/<file>`.
    pub fn get(&self, file: &str) -> Result<Arc<Script>, NoScript> {
        match file {
            "glimpse.js" => return Ok(self.glimpse.clone()),
            "glimpse.engagement.js" => return Ok(self.engagement.clone()),
            _ => {}
        }
        let set = plausible_variant(file)?;
        let mut cache = self.plausible.lock().unwrap_or_else(|e| e.into_inner());
        Ok(cache
            .entry(set)
            .or_insert_with(|| Arc::new(Script::of(plausible_script(set).into())))
            .clone())
    }
}

/// The extensions a Plausible script name asks for, as a bit set over [`EXTENSIONS`]. The
/// current per-site names (`pa-<id>.js`, `s-<id>.js`) configure the script through
/// `plausible.init()` instead: no extension.
pub(crate) fn plausible_variant(file: &str) -> Result<u16, NoScript> {
    let stem = file.strip_suffix(".js").ok_or(NoScript::Unknown)?;
    let per_site = ["pa-", "s-"].iter().any(|p| {
        stem.strip_prefix(p).is_some_and(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    });
    if per_site {
        return Ok(0);
    }
    let mut parts = stem.split('.');
    if !parts.next().is_some_and(|s| PLAUSIBLE_STEMS.contains(&s)) {
        return Err(NoScript::Unknown);
    }
    let mut set = 0u16;
    let mut ignored = Vec::new();
    for part in parts {
        if IGNORED_EXTENSIONS.contains(&part) {
            if ignored.contains(&part) {
                return Err(NoScript::Repeated(part.into()));
            }
            ignored.push(part);
            continue;
        }
        let bit = EXTENSIONS
            .iter()
            .position(|e| *e == part)
            .ok_or_else(|| NoScript::UnknownExtension(part.into()))?;
        if set & (1 << bit) != 0 {
            return Err(NoScript::Repeated(part.into()));
        }
        set |= 1 << bit;
    }
    Ok(set)
}

/// The Plausible build with the extensions of `set` filled in.
pub fn plausible_script(set: u16) -> String {
    let names: Vec<&str> = EXTENSIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| set & (1 << i) != 0)
        .map(|(_, e)| *e)
        .collect();
    // The names are fixed ASCII words: a plain string literal.
    PLAUSIBLE_SCRIPT.replacen(EXTENSIONS_SLOT, &format!("\"{}\"", names.join(" ")), 1)
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

    #[test]
    fn plausible_names_in_any_order() {
        assert_eq!(plausible_variant("script.js"), Ok(0));
        assert_eq!(plausible_variant("plausible.js"), Ok(0));
        let a = plausible_variant("script.hash.outbound-links.js").unwrap();
        let b = plausible_variant("plausible.outbound-links.hash.js").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, 0b11);
        let all = format!("script.{}.js", EXTENSIONS.join("."));
        assert_eq!(plausible_variant(&all), Ok((1 << EXTENSIONS.len()) - 1));
        assert_eq!(plausible_variant("script.pageleave.hash.js"), Ok(1));
        assert_eq!(plausible_variant("pa-XyZ_12-ab.js"), Ok(0));
        assert_eq!(plausible_variant("s-abc.js"), Ok(0));
        assert_eq!(plausible_variant("pa-.js"), Err(NoScript::Unknown));
        assert_eq!(plausible_variant("pa-a.b.js"), Err(NoScript::Unknown));
        assert_eq!(
            plausible_variant("script.hash.hash.js"),
            Err(NoScript::Repeated("hash".into()))
        );
        assert_eq!(
            plausible_variant("script.tagged.js"),
            Err(NoScript::UnknownExtension("tagged".into()))
        );
        for other in [
            "other.js",
            "script",
            "script.hash.css",
            "glimpse.hash.js",
            "",
        ] {
            assert_eq!(plausible_variant(other), Err(NoScript::Unknown), "{other}");
        }
    }

    #[test]
    fn variants_carry_their_extensions() {
        assert_eq!(PLAUSIBLE_SCRIPT.matches(EXTENSIONS_SLOT).count(), 1);
        let js = plausible_script(0b101);
        assert!(
            js.contains("(\"hash file-downloads\")"),
            "{}",
            &js[js.len() - 80..]
        );
        assert!(!js.contains(EXTENSIONS_SLOT));
        let scripts = Scripts::default();
        let one = scripts.get("script.file-downloads.hash.js").unwrap();
        assert!(Arc::ptr_eq(
            &one,
            &scripts.get("plausible.hash.file-downloads.js").unwrap()
        ));
        assert_eq!(scripts.get("glimpse.js").unwrap().plain, SCRIPT);
        assert_eq!(scripts.get("nope.js").unwrap_err(), NoScript::Unknown);
    }
}
