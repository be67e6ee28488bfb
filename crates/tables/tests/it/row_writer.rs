//! Streaming Parquet writes: row order across chunks, bounded row groups, equal bytes for
//! equal tables, no file left by a writer that does not finish, and the `created_by` other
//! readers parse.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{task, trajectory};
use parquet::file::reader::{FileReader, SerializedFileReader};
use scorch_api::parquet_io::{created_by, read_rows, write_rows};
use scorch_api::{CHUNK_ROWS, RowGroupLimits, RowWriter};
use scorch_tables::{Task, Trajectory};

fn row_groups(path: &std::path::Path) -> Vec<i64> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect()
}

#[test]
fn pushed_rows_come_back_in_order_across_chunks_and_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let n = CHUNK_ROWS * 2 + 123;
    let limits = RowGroupLimits {
        rows: 5000,
        bytes: usize::MAX,
    };
    let mut w = RowWriter::<Trajectory>::with_limits(&path, limits).unwrap();
    for i in 0..n {
        w.push(trajectory(i)).unwrap();
    }
    assert_eq!(w.finish().unwrap(), n as u64);
    let back: Vec<Trajectory> = read_rows(&path).unwrap();
    assert_eq!(back.len(), n);
    assert!(back.iter().enumerate().all(|(i, t)| *t == trajectory(i)));
    assert_eq!(row_groups(&path), vec![5000, 3315]);
}

#[test]
fn row_groups_are_cut_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let rows: Vec<Task> = (0..20_000).map(task).collect();
    let limits = RowGroupLimits {
        rows: usize::MAX,
        bytes: 64 << 10,
    };
    let mut w = RowWriter::<Task>::with_limits(&path, limits).unwrap();
    w.write_all(&rows).unwrap();
    w.finish().unwrap();
    let groups = row_groups(&path);
    // The size is checked after each chunk of rows, so a group ends at the chunk that
    // crosses the limit.
    assert!(groups.len() >= 3, "{groups:?}");
    assert!(
        groups.iter().all(|&g| g as usize <= CHUNK_ROWS),
        "{groups:?}"
    );
    assert_eq!(groups.iter().sum::<i64>(), 20_000);
    assert_eq!(read_rows::<Task>(&path).unwrap(), rows);
}

#[test]
fn equal_tables_give_equal_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Trajectory> = (0..3 * CHUNK_ROWS).map(trajectory).collect();
    let (a, b, c) = (
        dir.path().join("a.parquet"),
        dir.path().join("b.parquet"),
        dir.path().join("c.parquet"),
    );
    write_rows(&a, &rows).unwrap();
    write_rows(&b, &rows).unwrap();
    // Pushed one at a time instead of written from memory: the same file.
    let mut w = RowWriter::<Trajectory>::create(&c).unwrap();
    for r in rows.iter().cloned() {
        w.push(r).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap());
    assert_eq!(bytes, std::fs::read(&c).unwrap());
}

#[test]
fn a_writer_that_does_not_finish_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let mut w = RowWriter::<Task>::create(&path).unwrap();
    for i in 0..CHUNK_ROWS + 10 {
        w.push(task(i)).unwrap();
    }
    drop(w);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_empty_table_has_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_rows::<Task>(&path, &[]).unwrap();
    assert!(read_rows::<Task>(&path).unwrap().is_empty());
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(
        reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .num_columns(),
        6
    );
}

/// parquet-java's `VersionParser` format (`org.apache.parquet.VersionParser.FORMAT`): a
/// `created_by` that does not match it makes parquet-java ignore the file's string statistics
/// (`CorruptStatistics.shouldIgnoreStatistics`).
const PARQUET_JAVA_FORMAT: &str =
    r"^(.*?)\s+version\s*(?:([^(]*?)\s*(?:\(\s*build\s?([^)]*?)\s*\))?)?$";

#[test]
fn created_by_parses_as_readers_expect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_rows(&path, &[task(1)]).unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let written = reader
        .metadata()
        .file_metadata()
        .created_by()
        .unwrap()
        .to_owned();
    assert_eq!(written, created_by());
    let parsed = regex::Regex::new(PARQUET_JAVA_FORMAT)
        .unwrap()
        .captures(&written)
        .unwrap_or_else(|| panic!("`{written}` does not parse"));
    assert_eq!(&parsed[1], "scorch");
    assert_eq!(&parsed[2], env!("CARGO_PKG_VERSION"));
    assert!(parsed[3].starts_with("parquet-rs "), "{written}");
    // The old value did not parse, which is what made parquet-java drop the statistics.
    assert!(
        regex::Regex::new(PARQUET_JAVA_FORMAT)
            .unwrap()
            .captures("scorch")
            .is_none()
    );
}

#[test]
fn mostly_distinct_columns_skip_the_dictionary() {
    use parquet::basic::Encoding;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_rows(&path, &(0..2000).map(task).collect::<Vec<_>>()).unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    let dictionary = |name: &str| {
        let column = group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap();
        column.encodings().any(|e| e == Encoding::RLE_DICTIONARY)
            || column.encodings().any(|e| e == Encoding::PLAIN_DICTIONARY)
    };
    // Every id and question differs; the suite, split and metadata repeat.
    assert!(!dictionary("task_id"));
    assert!(!dictionary("question"));
    assert!(dictionary("suite"));
    assert!(dictionary("split"));
    assert!(dictionary("metadata"));
}
