//! The memory allocator of scorch's binaries (and of the benchmarks that speak for them).
//!
//! Writing a table allocates a few megabytes of Arrow buffers and Parquet pages per chunk of
//! rows and frees them a moment later. With glibc's allocator each such buffer is fresh memory
//! from the kernel: a `perf` profile of the Parquet benchmark put 30% of its time in the
//! kernel clearing new pages (`clear_page_erms`). mimalloc (version 3) keeps freed pages for a
//! second before it returns them, so the next chunk reuses them (BENCHMARKS.md, "Parquet").
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: scorch_alloc::Allocator = scorch_alloc::Allocator;
//! ```
#![deny(missing_docs)]

/// The global allocator to declare with `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;
