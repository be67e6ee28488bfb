//! The `scorch` command: a thin shell over `scorch-engine`, with the built-in node kinds.

#[macro_use]
mod cli;
mod diagnostics;

#[global_allocator]
static ALLOCATOR: scorch_alloc::Allocator = scorch_alloc::Allocator;

fn main() -> std::process::ExitCode {
    cli::main()
}
