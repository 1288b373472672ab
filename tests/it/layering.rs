//! The design's rules of the house, checked on the source tree (DESIGN.md,
//! "Imports run one way"): which module may name which.
//!
//! Every Rust file under `src/` is read with its comments and string
//! literals blanked out, and every path in the code that leaves its
//! module is resolved to the top-level module it names: `crate::x::…`
//! (also inside `use crate::{…}` groups and `pub use` re-exports),
//! `super::…` chains climbing out of the module (whatever their depth,
//! `#[path]` files included), and `$crate::…` in macros.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// (module, modules it must never name), from DESIGN.md.
const NEVER: &[(&str, &[&str])] = &[
    ("sip", &["transport", "store", "b2bua"]),
    ("media", &["recording", "store", "api"]),
    ("recording", &["retention", "api"]),
    ("store", &["routing", "api"]),
    ("keys", &["store", "api"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
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

/// `text` with comments, string and char literals replaced by spaces
/// (lines kept), so only code is left to look at.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&b, i) {
            // Raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match b.get(j) {
                    None => break,
                    Some('"') if (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            out.extend(b[i..j.min(b.len())].iter().map(|&c| blank(c)));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            out.extend(b[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' && is_char_literal(&b, i) {
            let mut j = i + 1;
            while j < b.len() && b[j] != '\'' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            out.extend(b[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// `'x'` or `'\n'` (a char literal), not a lifetime `'a`.
fn is_char_literal(b: &[char], i: usize) -> bool {
    matches!(
        (b.get(i + 1), b.get(i + 2)),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// The module path of every file: from its place in the tree, except
/// files that a `#[path = "…"] mod name;` puts elsewhere.
fn module_paths(files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<String>> {
    let root = src();
    let by_place = |f: &Path| -> Vec<String> {
        let rel = f.strip_prefix(&root).unwrap();
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        parts
    };
    let mut paths: BTreeMap<PathBuf, Vec<String>> =
        files.iter().map(|f| (f.clone(), by_place(f))).collect();
    for f in files {
        let text = code_only_keep_strings(&std::fs::read_to_string(f).unwrap());
        let mut rest = text.as_str();
        while let Some(at) = rest.find("#[path") {
            rest = &rest[at..];
            let Some(q1) = rest.find('"') else { break };
            let Some(q2) = rest[q1 + 1..].find('"') else {
                break;
            };
            let target = &rest[q1 + 1..q1 + 1 + q2];
            let after = &rest[q1 + 1 + q2..];
            let Some(m) = after.find("mod ") else { break };
            let name: String = after[m + 4..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let declaring = paths[f].clone();
            let file = f.parent().unwrap().join(target);
            let mut module = declaring;
            module.push(name);
            if let Ok(canonical) = file.canonicalize() {
                for (k, v) in paths.iter_mut() {
                    if k.canonicalize().ok() == Some(canonical.clone()) {
                        *v = module.clone();
                    }
                }
            }
            rest = &after[m..];
        }
    }
    paths
}

/// Comments blanked but strings kept (to read `#[path = "…"]`).
fn code_only_keep_strings(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers and `::`/`{`/`}`/`,` of `code`, in order.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if matches!(c, '{' | '}' | ',' | ';') {
            out.push(c.to_string());
            i += 1;
        } else {
            if !c.is_whitespace() && out.last().is_none_or(|t| t != " ") {
                out.push(" ".into());
            }
            i += 1;
        }
    }
    out
}

/// The top-level modules that the code of a file in module `module`
/// names, outside its own top-level module.
fn named_modules(code: &str, module: &[String]) -> BTreeSet<String> {
    let t = tokens(code);
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < t.len() {
        let at_path_start = i == 0 || t[i - 1] != "::";
        let anchored = matches!(t[i].as_str(), "crate" | "$crate" | "super");
        if at_path_start && anchored {
            i = path(&t, i, None, module.len(), &mut found);
        } else {
            i += 1;
        }
    }
    if let Some(own) = module.first() {
        found.remove(own);
    }
    found
}

/// Reads the path (or `use` tree) starting at `at`, noting every
/// top-level module it names in `found`; returns where it ends. `base`:
/// the depth (module path length) a `{…}` group's items are relative to;
/// `own`: the depth of the file's module, where `super` starts.
fn path(
    t: &[String],
    at: usize,
    base: Option<usize>,
    own: usize,
    found: &mut BTreeSet<String>,
) -> usize {
    let mut i = at;
    let mut depth = match t.get(i).map(String::as_str) {
        Some("crate" | "$crate") => {
            i += 1;
            0
        }
        Some("super") => base.unwrap_or(own),
        Some("self") => {
            i += 1;
            base.unwrap_or(own)
        }
        Some(name) if base.is_some() && is_ident(name) => base.unwrap_or(own),
        _ => return i + 1,
    };
    loop {
        match t.get(i).map(String::as_str) {
            Some("super") => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Some("::") => i += 1,
            Some("{") => {
                // A group: each item is a path relative to `depth`.
                i += 1;
                while let Some(tok) = t.get(i) {
                    match tok.as_str() {
                        "}" => return i + 1,
                        "," | " " => i += 1,
                        _ => i = path(t, i, Some(depth), own, found),
                    }
                }
                return i;
            }
            Some(name) if is_ident(name) => {
                if depth == 0 {
                    found.insert(name.to_owned());
                }
                depth += 1;
                i += 1;
                if t.get(i).map(String::as_str) != Some("::") {
                    return i;
                }
            }
            _ => return i,
        }
    }
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Every (file, module it names) of the tree.
fn edges() -> Vec<(PathBuf, Vec<String>, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let paths = module_paths(&files);
    let mut out = Vec::new();
    for f in &files {
        let code = code_only(&std::fs::read_to_string(f).unwrap());
        let module = &paths[f];
        for name in named_modules(&code, module) {
            out.push((f.clone(), module.clone(), name));
        }
    }
    out
}

#[test]
fn imports_run_one_way() {
    let mut broken = Vec::new();
    for (file, module, named) in edges() {
        let Some(top) = module.first() else { continue };
        for (from, never) in NEVER {
            if top == from && never.contains(&named.as_str()) {
                let rel = file.strip_prefix(src().parent().unwrap()).unwrap();
                broken.push(format!(
                    "{} ({}) names {named}",
                    rel.display(),
                    module.join("::")
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against DESIGN.md's rules:\n{}",
        broken.join("\n")
    );
}

#[test]
fn only_the_driver_uses_tokio_under_b2bua() {
    let mut files = Vec::new();
    rust_files(&src().join("b2bua"), &mut files);
    let users: Vec<String> = files
        .iter()
        .filter(|f| {
            let code = code_only(&std::fs::read_to_string(f).unwrap());
            tokens(&code).iter().any(|t| t == "tokio")
        })
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut users = users;
    users.sort();
    // The driver, and its write-behind writer of call records (cdr.rs).
    assert_eq!(
        users,
        vec!["cdr.rs".to_owned(), "driver.rs".to_owned()],
        "files under src/b2bua naming tokio"
    );
}

/// The checker itself sees what it must: every kind of path.
#[test]
fn the_checker_sees_every_kind_of_path() {
    let module = |m: &str| m.split("::").map(str::to_owned).collect::<Vec<_>>();
    let seen = |code: &str, m: &str| named_modules(&code_only(code), &module(m));
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        seen("use crate::recording::g711::Codec;", "media::relay"),
        set(&["recording"])
    );
    assert_eq!(
        seen("use crate::{store, keys::Dek};", "media"),
        set(&["keys", "store"])
    );
    assert_eq!(
        seen("pub use crate::routing::Rules as R;", "store"),
        set(&["routing"])
    );
    assert_eq!(
        seen("let x = crate::api::problem::f();", "keys"),
        set(&["api"])
    );
    assert_eq!(
        seen(
            "fn f() -> super::super::retention::X {}",
            "recording::writer"
        ),
        set(&["retention"])
    );
    assert_eq!(
        seen("use super::{super::store::S, x};", "keys::dir"),
        set(&["store"])
    );
    assert_eq!(seen("use super::rtp::classify;", "media::relay"), set(&[]));
    assert_eq!(seen("$crate::store::x!()", "sip::macros"), set(&["store"]));
    // Comments and strings are not code.
    assert_eq!(
        seen(
            "// crate::store\n/* crate::api */ let s = \"crate::b2bua\";",
            "sip"
        ),
        set(&[])
    );
    assert_eq!(
        seen(
            "let r = r#\"crate::store\"#; let c = '\"'; crate::transport::x()",
            "sip"
        ),
        set(&["transport"])
    );
}
