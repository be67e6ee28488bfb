//! TensorBoard event files: one per node that reports metrics, in `DIR/<run id>/<node id>/`,
//! written as the metrics come (each record flushed, so `tensorboard --logdir DIR` shows a
//! running node's curve).
//!
//! The format is TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C
//! of the data) around `tensorflow.Event` protos; the three messages needed here are declared
//! with `prost` below, field numbers from TensorFlow's `event.proto` and `summary.proto`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use prost::Message;
use scorch_engine::events::{Event, Observer, unix_time};

use crate::TrackError;

/// `tensorflow.Event`, the fields scorch writes.
#[derive(Clone, PartialEq, prost::Message)]
struct EventProto {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(SummaryProto),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryProto {
    #[prost(message, repeated, tag = "1")]
    value: Vec<ValueProto>,
}

/// `tensorflow.Summary.Value` with a `simple_value` (a oneof, so that 0.0 is written).
#[derive(Clone, PartialEq, prost::Message)]
struct ValueProto {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "Scalar", tags = "2")]
    value: Option<Scalar>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Scalar {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// One TFRecord around `data`.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// One node's event file.
#[derive(Debug)]
struct EventFile {
    out: BufWriter<File>,
    /// Metric names reported live (their summary values are not written again).
    live: HashSet<String>,
}

impl EventFile {
    fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let now = unix_time();
        let name = format!(
            "events.out.tfevents.{}.{host}.{}.0",
            now as u64,
            std::process::id()
        );
        let mut f = Self {
            out: BufWriter::new(File::create(dir.join(name))?),
            live: HashSet::new(),
        };
        f.write(&EventProto {
            wall_time: now,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(f)
    }

    fn write(&mut self, event: &EventProto) -> std::io::Result<()> {
        self.out.write_all(&record(&event.encode_to_vec()))?;
        self.out.flush()
    }

    fn scalar(&mut self, tag: &str, step: u64, value: f64, time: f64) -> std::io::Result<()> {
        self.write(&EventProto {
            wall_time: time,
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(What::Summary(SummaryProto {
                value: vec![ValueProto {
                    tag: tag.to_owned(),
                    value: Some(Scalar::SimpleValue(value as f32)),
                }],
            })),
        })
    }
}

/// Writes a run's metrics as TensorBoard event files.
#[derive(Debug)]
pub struct TensorBoard {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    run: String,
    files: HashMap<String, EventFile>,
}

impl TensorBoard {
    /// Event files under `dir`, which is created now.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, TrackError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| TrackError::TensorBoard {
            dir: dir.clone(),
            source: e,
        })?;
        Ok(Self {
            dir,
            state: Mutex::new(State::default()),
        })
    }

    fn handle(&self, event: &Event) -> std::io::Result<()> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let state = &mut *state;
        match event {
            Event::RunStarted { run, .. } => run.clone_into(&mut state.run),
            Event::Metric(m) => {
                let f = match state.files.entry(m.node.clone()) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(EventFile::create(&self.dir.join(&state.run).join(&m.node))?)
                    }
                };
                f.live.insert(m.name.clone());
                f.scalar(&m.name, m.step.unwrap_or(0), m.value, m.time)?;
            }
            Event::NodeFinished { node, metrics, .. } => {
                // The summary metrics, but for those already drawn as they came.
                let mut file = state.files.remove(node);
                for m in metrics {
                    if file.as_ref().is_some_and(|f| f.live.contains(&m.name)) {
                        continue;
                    }
                    let f = match &mut file {
                        Some(f) => f,
                        None => {
                            file.insert(EventFile::create(&self.dir.join(&state.run).join(node))?)
                        }
                    };
                    f.scalar(&m.name, m.step.unwrap_or(0), m.value, unix_time())?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Observer for TensorBoard {
    fn event(&self, event: &Event) {
        if let Err(e) = self.handle(event) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write a TensorBoard event file");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_record_crc_is_tensorflows_masked_crc32c() {
        // CRC-32C of "123456789" is 0xe3069283 (the check value of the Castagnoli
        // polynomial); masking rotates it right by 15 bits and adds 0xa282ead8.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        let r = record(b"abc");
        assert_eq!(r.len(), 8 + 4 + 3 + 4);
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
    }

    #[test]
    fn a_zero_scalar_is_still_written() {
        let v = ValueProto {
            tag: "loss".into(),
            value: Some(Scalar::SimpleValue(0.0)),
        };
        // tag (0x0a, 4, "loss") then simple_value (0x15, four zero bytes).
        assert_eq!(
            v.encode_to_vec(),
            [0x0a, 4, b'l', b'o', b's', b's', 0x15, 0, 0, 0, 0]
        );
    }
}
