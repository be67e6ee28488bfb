//! The memory allocator of scorch's binaries (and of the benchmarks that speak for them).
//!
//! Writing a table allocates a few megabytes of Arrow buffers and Parquet pages per chunk of
//! rows and frees them a moment later. glibc's allocator hands such buffers back to the kernel
//! and gets fresh pages for the next chunk; mimalloc (version 3) keeps freed memory for a
//! second (`purge_delay`) and reuses it. `cargo bench -p scorch-agent --bench parquet` wrote
//! 200,000 tasks in 121 ms with it against 191 ms with glibc (BENCHMARKS.md, "Parquet").
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: scorch_alloc::Allocator = scorch_alloc::Allocator;
//! ```
#![deny(missing_docs)]

/// The global allocator to declare with `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;
