//! The module graph: no two modules of the library import each other (a module and its own
//! parent folder's mod.rs aside, which declares it). Read off the sources: every `crate::` and
//! `super::` path, in `use` lines and in code, resolved to the file of the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every module of src/ (the binary's folder aside): its path ("ops", "conv2d") and file.
fn modules(dir: &Path, path: &Module, out: &mut BTreeMap<Module, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_str().unwrap().to_string();
        if p.is_dir() {
            if name != "bin" {
                modules(&p, &[path.clone(), vec![name]].concat(), out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let module = if name == "mod" || name == "lib" { path.clone() } else { [path.clone(), vec![name]].concat() };
            out.insert(module, p);
        }
    }
}

/// The longest prefix of `path` that is a module.
fn resolve(path: &[String], known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| known.contains_key(m))
}

/// The paths a source names after `crate::` or `super::`, braces expanded one level:
/// `use super::{a, b::C}` gives `super::a` and `super::b::C`.
fn named_paths(source: &str) -> Vec<(bool, Vec<String>)> {
    let code: String = source.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    for (root, is_crate) in [("crate::", true), ("super::", false)] {
        for (at, _) in code.match_indices(root) {
            if code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[at + root.len()..];
            let head: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let base: Vec<String> = head.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
            if head.ends_with("::") && rest[head.len()..].starts_with('{') {
                let group = &rest[head.len() + 1..rest[head.len()..].find('}').map_or(rest.len(), |e| head.len() + e)];
                for item in group.split(',') {
                    let item: Vec<String> = item.trim().split("::").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                    out.push((is_crate, [base.clone(), item].concat()));
                }
            } else {
                out.push((is_crate, base));
            }
        }
    }
    out
}

#[test]
fn no_two_modules_import_each_other() {
    let mut known = BTreeMap::new();
    modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &Vec::new(), &mut known);
    assert!(known.contains_key(&vec!["ops".to_string(), "conv2d".to_string()]), "the walk found the modules");
    let mut imports: BTreeSet<(Module, Module)> = BTreeSet::new();
    for (module, file) in &known {
        let is_folder = file.file_stem().is_some_and(|s| s == "mod" || s == "lib");
        // `super` is the folder a file sits in: the module's parent, for mod.rs too.
        let parent: Module = module[..module.len().saturating_sub(1)].to_vec();
        for (is_crate, path) in named_paths(&std::fs::read_to_string(file).unwrap()) {
            let full = if is_crate { path } else { [parent.clone(), path].concat() };
            if let Some(target) = resolve(&full, &known).filter(|t| t != module) {
                imports.insert((module.clone(), target));
            }
        }
        if is_folder {
            // A folder's re-exports of its own children (`pub use conv2d::Conv2dLayer`).
            for line in std::fs::read_to_string(file).unwrap().lines() {
                if let Some(child) = line.trim().strip_prefix("pub use ").and_then(|r| r.split("::").next()) {
                    if let Some(t) = resolve(&[module.clone(), vec![child.to_string()]].concat(), &known).filter(|t| t != module) {
                        imports.insert((module.clone(), t));
                    }
                }
            }
        }
    }
    let parent_of = |a: &Module, b: &Module| b.len() == a.len() + 1 && b.starts_with(a);
    let circles: Vec<String> = imports
        .iter()
        .filter(|(a, b)| a < b && imports.contains(&(b.clone(), a.clone())) && !parent_of(a, b) && !parent_of(b, a))
        .map(|(a, b)| format!("{} <-> {}", a.join("::"), b.join("::")))
        .collect();
    assert!(circles.is_empty(), "modules that import each other: {circles:?}");
    // The check sees real imports: conv2d uses winograd, the trainer uses checkpoints.
    let has = |a: &str, b: &str| imports.iter().any(|(x, y)| x.join("::") == a && y.join("::") == b);
    assert!(has("ops::conv2d", "ops::winograd") && has("train::trainer", "train::checkpoint"), "{imports:?}");
}
