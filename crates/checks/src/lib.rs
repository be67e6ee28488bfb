//! Checks of the repository's source that no compiler makes: the modules of each crate form
//! no import cycle, and no library function returns `Result<_, String>`. A module here is a top-level module of a crate (`src/foo.rs` or
//! `src/foo/`); it imports another when its code (not its comments, not its `#[cfg(test)]`
//! part) names `crate::other`. A cycle means two ideas that cannot be read, tested or moved
//! apart; the fix is the part both need in a module of its own.
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's modules and which others each imports.
pub type ModuleGraph = BTreeMap<String, BTreeSet<String>>;

/// The source folders of the workspace's crates under `root`: `src/`, `crates/*/src`,
/// `plugins/*/src` (binaries under `src/bin/` are crates of their own and left out).
pub fn source_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join("src")];
    for group in ["crates", "plugins"] {
        let Ok(entries) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("src"))
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        dirs.extend(found);
    }
    dirs
}

/// The top-level module a file under `src` belongs to (`""`: the crate root).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.into_iter().next().unwrap_or_default()
}

/// The code of a file without its comments and without what follows its first
/// `#[cfg(test)]` (test modules sit at the end of a file here).
fn code(text: &str) -> String {
    // Comment lines are blanked, not dropped, so that line numbers stay the file's.
    let code = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    code.split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The first path segments after each `crate::` in `code`, with those of a group
/// (`crate::{a, b::c}` gives `a` and `b`).
fn imported(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `$crate::` (in macros) and `other_crate::` name no module of this crate.
        if code[..i].ends_with(|c: char| c == '$' || c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The items of the group at depth 0, up to its closing brace.
            let (mut depth, mut item) = (0usize, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(item.trim_start()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(ident(item.trim_start()));
            out.remove("");
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The `.rs` files under `src` with their path relative to it, sorted (`bin/` left out:
/// binaries are crates of their own).
fn rust_files(src: &Path) -> std::io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(src).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        let path = entry.path();
        let rel = path.strip_prefix(src).unwrap_or(path).to_path_buf();
        if rel.starts_with("bin") || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files.push((path.to_path_buf(), rel));
    }
    Ok(files)
}

/// The module graph of the crate whose source folder is `src`.
pub fn module_graph(src: &Path) -> std::io::Result<ModuleGraph> {
    let mut graph = ModuleGraph::new();
    for (path, rel) in rust_files(src)? {
        let module = module_of(&rel);
        let text = std::fs::read_to_string(&path)?;
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imported(&code(&text)).into_iter().filter(|m| *m != module));
    }
    // Only edges to the crate's own modules (`crate::SomeType` re-exported at the root is not
    // a module).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for targets in graph.values_mut() {
        targets.retain(|t| modules.contains(t));
    }
    Ok(graph)
}

/// The import cycles of `graph`: its strongly connected components of more than one module,
/// each sorted (Tarjan's algorithm).
pub fn cycles(graph: &ModuleGraph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g ModuleGraph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found.sort();
    walk.found
}

/// Places in the code of the `.rs` files under `src` (comments and `#[cfg(test)]` parts
/// left out) where a `Result` has `String` as its error type: `(file, line)`.
pub fn string_errors(src: &Path) -> std::io::Result<Vec<(PathBuf, usize)>> {
    let mut found = Vec::new();
    for (path, _) in rust_files(src)? {
        let text = code(&std::fs::read_to_string(&path)?);
        for at in string_error_offsets(&text) {
            found.push((path.clone(), text[..at].lines().count()));
        }
    }
    Ok(found)
}

/// Byte offsets of each `Result<T, String>` in `code` (`T` may hold commas and generics).
fn string_error_offsets(code: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (start, _) in code.match_indices("Result<") {
        if code[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let body = &code[start + "Result<".len()..];
        let (mut depth, mut args, mut current) = (1usize, Vec::new(), String::new());
        for c in body.chars() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => depth -= 1,
                ',' if depth == 1 => {
                    args.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                break;
            }
            current.push(c);
        }
        args.push(current);
        // A trailing comma leaves an empty last argument.
        args.retain(|a| !a.trim().is_empty());
        if args.len() == 2 && args[1].trim() == "String" {
            out.push(start);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_read_from_code_not_comments_or_tests() {
        let text = "use crate::a::X;\nuse crate::{b, c::d, e::{F, G}};\n// crate::zz\n/// [`crate::doc`]\nfn f() { crate::h::i(); $crate::m; other_crate::n; }\n#[cfg(test)]\nmod tests { use crate::t; }\n";
        let got = imported(&code(text));
        let want: BTreeSet<String> = ["a", "b", "c", "e", "h"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_cycle_is_found_and_a_chain_is_not() {
        let g = |edges: &[(&str, &str)]| {
            let mut g = ModuleGraph::new();
            for (a, b) in edges {
                g.entry(a.to_string()).or_default().insert(b.to_string());
                g.entry(b.to_string()).or_default();
            }
            g
        };
        assert!(cycles(&g(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
        assert_eq!(
            cycles(&g(&[
                ("a", "b"),
                ("b", "c"),
                ("c", "a"),
                ("c", "d"),
                ("d", "e"),
                ("e", "d")
            ])),
            vec![vec!["a", "b", "c"], vec!["d", "e"]]
        );
    }

    #[test]
    fn a_string_error_type_is_found_whatever_the_ok_type() {
        let code = "fn a() -> Result<(), String> {}\nfn b() -> Result<Vec<(u8, u8)>, String> {}\nfn c() -> Result<String, E> {}\nfn d() -> io::Result<String> {}\ntype R = Result<\n    HashMap<String, String>,\n    String,\n>;";
        let lines: Vec<usize> = string_error_offsets(code)
            .into_iter()
            .map(|at| code[..at].lines().count())
            .collect();
        // 1-based lines: `lines()` counts the one the match starts on.
        assert_eq!(lines, [1, 2, 5]);
    }

    #[test]
    fn files_belong_to_their_top_level_module() {
        assert_eq!(module_of(Path::new("lib.rs")), "");
        assert_eq!(module_of(Path::new("run.rs")), "run");
        assert_eq!(module_of(Path::new("executor/mod.rs")), "executor");
        assert_eq!(module_of(Path::new("executor/local.rs")), "executor");
    }
}
