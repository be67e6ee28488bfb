//! The fixed settings of every Parquet file scorch writes, so that equal tables give equal
//! bytes.

use parquet::basic::Compression;
use parquet::file::properties::{WriterProperties, WriterVersion};

/// Writer settings for every table scorch writes. Fixed, so equal tables give equal bytes.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        .set_created_by(created_by())
        .build()
}

/// The `created_by` of scorch's Parquet files: `scorch version X (build parquet-rs Y)`.
///
/// Readers parse this field as `APPLICATION version VERSION (build BUILD)` to decide whether
/// to trust a file's statistics: by its source (`CorruptStatistics`), parquet-java ignores
/// the min/max of every string column of a file whose `created_by` does not parse. The build names the encoder
/// (the parquet crate), not a commit, because a file's bytes depend on the writer's version
/// and settings only: equal tables written by two builds of one version stay equal, so a
/// recomputed node still matches its cached successors (a new version does change the bytes
/// of the tables it writes, and so the cache keys of the nodes downstream of them).
pub fn created_by() -> String {
    let encoder = parquet::file::properties::DEFAULT_CREATED_BY.replacen(" version ", " ", 1);
    format!(
        "scorch version {} (build {encoder})",
        env!("CARGO_PKG_VERSION")
    )
}
