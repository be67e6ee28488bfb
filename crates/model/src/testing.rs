//! Helpers for the tests of node kinds that roll out, correct or train a student: rows as a
//! table input, and a tiny student checkpoint as a blob input (demonstrations to train it on
//! come from `scorch_agent::oracle::demonstration_rows`).

use std::path::Path;

use scorch_api::testing::TestInput;
use scorch_tables::{TableRow, Trajectory};
use tch::Device;

use crate::ModelError;
use scorch_spec::student::InitParams;

use crate::scratch::from_scratch;

/// Rows as a table input.
pub fn table<T: TableRow>(rows: &[T]) -> Result<TestInput, scorch_api::PluginError> {
    Ok(TestInput::Table(vec![T::to_batch(rows)?]))
}

/// The smallest student worth running (one layer of width 32, a 300-token tokenizer trained
/// on `demos`), saved in `dir` and given as a blob input.
pub fn tiny_student(demos: &[Trajectory], dir: &Path) -> Result<TestInput, ModelError> {
    let init: InitParams = serde_json::from_value(serde_json::json!({
        "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 64
    }))
    .map_err(|e| ModelError::Config(e.to_string()))?;
    from_scratch(&init, demos, Device::Cpu, 0)?.save(dir)?;
    Ok(TestInput::Blobs(dir.to_path_buf()))
}

/// The body of one HTTP request read from `sock` (by its `content-length`), for mock servers
/// in tests; `None` when the connection closes first.
pub async fn read_request_body(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some(buf[end + 4..end + 4 + len].to_vec());
        }
    }
}
