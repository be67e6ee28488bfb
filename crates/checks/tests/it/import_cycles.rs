//! No crate of the workspace has an import cycle between its modules.

use std::path::Path;

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs = scorch_checks::source_dirs(&root);
    assert!(dirs.len() > 10, "found only {dirs:?}");
    // The reader sees real imports: the scheduler uses the executors and the job, which uses
    // the executors, and none of them the scheduler.
    let engine = scorch_checks::module_graph(&root.join("crates/engine/src")).unwrap();
    assert!(engine["run"].contains("executor") && engine["run"].contains("job"));
    assert!(engine["job"].contains("executor") && !engine["executor"].contains("run"));
    let mut found = Vec::new();
    for src in &dirs {
        let graph = scorch_checks::module_graph(src).unwrap();
        for cycle in scorch_checks::cycles(&graph) {
            found.push(format!("{}: {}", src.display(), cycle.join(" ↔ ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}
