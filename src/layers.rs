//! The layer rule: a module may use only modules declared before it in `lib.rs`, and inside a
//! module directory, a submodule may use only the submodules its `mod.rs` declares before it.
//! Reads every source file, finds each `crate::<module>` (and `super::<sibling>`) it names
//! outside comments, strings and its test module, and fails on a reference that points up the
//! order (which is also the only way to form a cycle).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SRC: &str = env!("CARGO_MANIFEST_DIR");

/// The modules a file declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`), in order.
fn declared_modules(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .filter_map(|l| {
            let (vis, rest) = l.trim().split_once("mod ")?;
            let declared = vis.is_empty() || vis.starts_with("pub");
            declared.then(|| rest.strip_suffix(';').map(str::to_string))?
        })
        .filter(|m| m != "layers")
        .collect()
}

/// Top-level modules in the order `lib.rs` declares them.
fn layer_order() -> Vec<String> {
    declared_modules(&Path::new(SRC).join("src/lib.rs"))
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

/// The code of a file without its `#[cfg(test)]` module, comments and string literals (whose
/// text, `"http://…"` or `"crate::x"`, is no reference).
fn production_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '"' && !escaped {
                        break;
                    }
                    escaped = c == '\\' && !escaped;
                }
                out.push('"');
            }
            // A char literal (`'"'`), not a lifetime: skip it whole.
            '\'' if matches!(chars.clone().nth(1), Some('\'')) => {
                out.push(c);
                out.push(chars.next().unwrap_or(' '));
                out.push(chars.next().unwrap_or(' '));
            }
            '\'' if chars.peek() == Some(&'\\') => {
                out.push(c);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
                out.push('\'');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every `<prefix>name` and `<prefix>{a, b::c}` head named in `code`.
fn references(code: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices(prefix) {
        // `xcrate::` or `super::super::` are other paths.
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
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

/// (file, used module) pairs that break the rule.
fn violations() -> Vec<(String, String)> {
    let order = layer_order();
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let src = Path::new(SRC).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_path_buf();
        let parts: Vec<String> = rel
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .collect();
        let module = parts[0].clone();
        let Some(&own) = rank.get(module.as_str()) else {
            if !["lib", "main", "layers"].contains(&module.as_str()) {
                bad.push((
                    file.display().to_string(),
                    "(not declared in lib.rs)".into(),
                ));
            }
            continue;
        };
        let code = production_code(&std::fs::read_to_string(&file).unwrap());
        for used in references(&code, "crate::") {
            match rank.get(used.as_str()) {
                Some(&r) if r < own || used == module => {}
                _ => bad.push((file.display().to_string(), used)),
            }
        }
        // Inside a module directory: siblings in the order its mod.rs declares them.
        if parts.len() == 2 && parts[1] != "mod" {
            let siblings = declared_modules(&src.join(&module).join("mod.rs"));
            let me = siblings.iter().position(|m| *m == parts[1]);
            let grouped = references(&code, &format!("crate::{module}::"));
            for used in references(&code, "super::").into_iter().chain(grouped) {
                let Some(theirs) = siblings.iter().position(|m| *m == used) else {
                    continue; // an item of the parent module itself
                };
                if me.is_none_or(|me| theirs >= me) && used != parts[1] {
                    bad.push((file.display().to_string(), format!("{module}::{used}")));
                }
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
    assert_eq!(references(code, "crate::"), ["model", "clock", "store"]);
    assert_eq!(
        references("use super::{cluster::Layout, x};", "super::"),
        ["cluster", "x"]
    );
    assert_eq!(
        production_code("a // crate::x\n#[cfg(test)]\nmod tests { crate::y }"),
        "a \n"
    );
    // Strings, char literals and block comments hide nothing and fake nothing.
    let code = production_code(
        "let u = \"http://h/\"; crate::a::f(); let q = '\"'; /* crate::b */ let s = \"crate::c\";",
    );
    assert_eq!(references(&code, "crate::"), ["a"]);
    let code =
        production_code("let c = '\\''; crate::d::g(); fn f<'a>(x: &'a str) { crate::e::h() }");
    assert_eq!(references(&code, "crate::"), ["d", "e"]);
}
