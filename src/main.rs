//! The `scorch` command: a thin shell over `scorch-engine`, with the built-in node kinds.

#[macro_use]
mod cli;
mod diagnostics;

fn main() -> std::process::ExitCode {
    cli::main()
}
