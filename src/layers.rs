//! The layer rule: a module may use only modules declared before it in `lib.rs`. Reads every
//! source file, finds each `crate::<module>` it names outside its test module, and fails on a
//! reference that points up the order (which is also the only way to form a cycle).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SRC: &str = env!("CARGO_MANIFEST_DIR");

/// Top-level modules in the order `lib.rs` declares them.
fn layer_order() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(SRC).join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            // `mod x;`, `pub mod x;`, `pub(crate) mod x;`
            let (vis, rest) = l.trim().split_once("mod ")?;
            let declared = vis.is_empty() || vis.starts_with("pub");
            declared.then(|| rest.strip_suffix(';').map(str::to_string))?
        })
        .filter(|m| m != "layers")
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn production_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    code.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::name` and `crate::{a, b::c}` head named in `code`.
fn crate_references(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Only the heads of the group's items: nested groups belong to them.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            names.push(ident(item.trim()));
        } else {
            names.push(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Module of a file: its first path component under `src/`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(Path::new(SRC).join("src")).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// (file, used module) pairs that break the rule.
fn violations() -> Vec<(String, String)> {
    let order = layer_order();
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut files = Vec::new();
    rust_files(&Path::new(SRC).join("src"), &mut files);
    let mut bad = Vec::new();
    for file in files {
        let module = module_of(&file);
        let Some(&own) = rank.get(module.as_str()) else {
            continue; // lib.rs, main.rs, this file
        };
        let code = production_code(&std::fs::read_to_string(&file).unwrap());
        for used in crate_references(&code) {
            match rank.get(used.as_str()) {
                Some(&r) if r < own || used == module => {}
                _ => bad.push((file.display().to_string(), used)),
            }
        }
    }
    bad
}

#[test]
fn every_module_uses_only_lower_layers() {
    let order = layer_order();
    assert!(order.len() >= 20, "lib.rs lists the layers: {order:?}");
    let bad = violations();
    assert!(
        bad.is_empty(),
        "imports that point up the layer order of lib.rs (or at no module):\n{}",
        bad.iter()
            .map(|(f, m)| format!("  {f} uses crate::{m}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_scanner_sees_grouped_and_inline_references() {
    let code = "use crate::{model::{self, Site}, clock};\nlet x = crate::store::ping(db);";
    assert_eq!(crate_references(code), ["model", "clock", "store"]);
    assert_eq!(
        production_code("a // crate::x\n#[cfg(test)]\nmod tests { crate::y }"),
        "a "
    );
}
