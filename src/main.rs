//! The `scorch` command: a thin shell over the engine in the `scorch` library.

#[macro_use]
mod cli;
mod data;
mod report;

fn main() -> std::process::ExitCode {
    cli::main()
}
