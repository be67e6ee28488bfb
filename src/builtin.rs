//! The plugins built into the `scorch` binary.

use scorch_api::Registry;

/// Every built-in node kind.
pub fn registry() -> Registry {
    scorch_demo::register(Registry::new().with(scorch_exec::Exec))
}
