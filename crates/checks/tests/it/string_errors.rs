//! Library crates return typed errors: no `Result<_, String>` outside tests (the binaries in
//! `src/` turn errors into messages and exit codes, and may).

use std::path::Path;

#[test]
fn no_library_function_returns_a_string_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = Vec::new();
    for src in scorch_checks::source_dirs(&root) {
        if src == root.join("src") {
            continue;
        }
        for (file, line) in scorch_checks::string_errors(&src).unwrap() {
            found.push(format!("{}:{line}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "Result<_, String> in library code (give it an error type):\n{}",
        found.join("\n")
    );
}
