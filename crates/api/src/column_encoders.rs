//! The column encoders of one Parquet row group, shared by a few threads.
//!
//! Each leaf column has one writer and a queue of jobs (its slices of the batches handed in,
//! then a close). Any thread may run a column's next job, but only one at a time and in queue
//! order, so a column's pages are the same whichever threads encode them and however many
//! there are. Threads pick the column with the longest queue: the slowest column is worked on
//! whenever a thread is free, rather than one thread per fixed set of columns waiting while
//! another is behind. The caller helps too: when it is too far ahead of the encoders it runs
//! their jobs instead of waiting, so no core sits idle while work is queued, and with no encoder
//! threads at all (one core) it encodes everything itself.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn};
use parquet::errors::ParquetError;

/// How many slices of one column may wait before the caller stops converting and helps.
const BACKLOG: usize = 2;

enum Job {
    Write(ArrowLeafColumn),
    Close,
}

/// What running a job leaves.
enum Done {
    Writer(Box<ArrowColumnWriter>),
    Chunk(Box<ArrowColumnChunk>),
}

#[derive(Default)]
struct Column {
    /// `None` while a thread runs one of this column's jobs, and once it is closed.
    writer: Option<Box<ArrowColumnWriter>>,
    jobs: VecDeque<Job>,
    chunk: Option<Box<ArrowColumnChunk>>,
}

/// Where a running job came from.
#[derive(Clone, Copy)]
struct Taken {
    group: u64,
    column: usize,
}

#[derive(Default)]
struct State {
    columns: Vec<Column>,
    /// Which row group `columns` belong to; a job of an abandoned one is not put back.
    group: u64,
    /// A row group is being written (`begin` until `finish` or an error).
    open: bool,
    /// The first error of any job; once set, nothing more is run.
    error: Option<ParquetError>,
    /// No more row groups: encoder threads return once nothing is queued.
    stopping: bool,
}

impl State {
    /// The next job: the first in line of the column with the longest queue whose writer is
    /// free (not being run by another thread).
    fn take(&mut self) -> Option<(Taken, Box<ArrowColumnWriter>, Job)> {
        if self.error.is_some() {
            return None;
        }
        let (index, column) = self
            .columns
            .iter_mut()
            .enumerate()
            .filter(|(_, c)| c.writer.is_some() && !c.jobs.is_empty())
            .max_by_key(|(i, c)| (c.jobs.len(), std::cmp::Reverse(*i)))?;
        let job = column.jobs.pop_front()?;
        let writer = column.writer.take()?;
        Some((
            Taken {
                group: self.group,
                column: index,
            },
            writer,
            job,
        ))
    }

    fn backlog(&self) -> usize {
        self.columns.iter().map(|c| c.jobs.len()).max().unwrap_or(0)
    }

    fn put(&mut self, taken: Taken, done: Result<Done, ParquetError>) {
        if taken.group != self.group {
            return;
        }
        let Some(slot) = self.columns.get_mut(taken.column) else {
            return;
        };
        match done {
            Ok(Done::Writer(writer)) => slot.writer = Some(writer),
            Ok(Done::Chunk(chunk)) => slot.chunk = Some(chunk),
            Err(e) => {
                slot.jobs.clear();
                self.error.get_or_insert(e);
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when jobs are queued or the threads should stop.
    queued: Condvar,
    /// Signalled when a job is done.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and their panics are caught, so a poisoned lock still
        // holds a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `job` with `writer` (the lock is not held), catching a panic as an error.
    fn run(writer: Box<ArrowColumnWriter>, job: Job) -> Result<Done, ParquetError> {
        let mut writer = writer;
        catch_unwind(AssertUnwindSafe(move || match job {
            Job::Write(leaf) => writer.write(&leaf).map(|()| Done::Writer(writer)),
            Job::Close => (*writer).close().map(|c| Done::Chunk(Box::new(c))),
        }))
        .unwrap_or_else(|_| Err(ParquetError::General("a column encoder panicked".into())))
    }

    /// Run one job if there is one; returns the state again and whether it ran one.
    fn help<'a>(&'a self, mut state: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, bool) {
        let Some((taken, writer, job)) = state.take() else {
            return (state, false);
        };
        drop(state);
        let done = Self::run(writer, job);
        let mut state = self.lock();
        state.put(taken, done);
        self.done.notify_all();
        // The column's writer is free again: its next job can go to another thread.
        self.queued.notify_all();
        (state, true)
    }

    fn work(&self) {
        let mut state = self.lock();
        loop {
            let ran;
            (state, ran) = self.help(state);
            if ran {
                continue;
            }
            if state.stopping {
                return;
            }
            state = self
                .queued
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The writers of one row group's leaf columns and the threads that encode them.
pub(crate) struct ColumnEncoders {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ColumnEncoders {
    /// Start `threads` encoder threads (0: the caller encodes everything itself).
    pub(crate) fn start(threads: usize) -> Result<Self, ParquetError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            queued: Condvar::new(),
            done: Condvar::new(),
        });
        let mut encoders = Self {
            shared,
            threads: Vec::new(),
        };
        for _ in 0..threads {
            let shared = Arc::clone(&encoders.shared);
            let thread = std::thread::Builder::new()
                .name("parquet-encoder".into())
                .spawn(move || shared.work())
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            encoders.threads.push(thread);
        }
        Ok(encoders)
    }

    /// Start a row group: one writer per leaf column, in schema order.
    pub(crate) fn begin(&mut self, writers: Vec<ArrowColumnWriter>) {
        let mut state = self.shared.lock();
        state.group += 1;
        state.open = true;
        state.columns = writers
            .into_iter()
            .map(|writer| Column {
                writer: Some(Box::new(writer)),
                ..Column::default()
            })
            .collect();
    }

    /// Whether a row group is being written.
    pub(crate) fn begun(&self) -> bool {
        self.shared.lock().open
    }

    /// Queue one slice of every leaf column (in schema order). Returns once the queues are
    /// short again, having run jobs itself while they were not.
    pub(crate) fn write(&mut self, leaves: Vec<ArrowLeafColumn>) -> Result<(), ParquetError> {
        let mut state = self.shared.lock();
        if leaves.len() != state.columns.len() {
            return Err(ParquetError::General(format!(
                "{} leaf columns for {} column writers",
                leaves.len(),
                state.columns.len()
            )));
        }
        for (column, leaf) in state.columns.iter_mut().zip(leaves) {
            column.jobs.push_back(Job::Write(leaf));
        }
        self.shared.queued.notify_all();
        while state.error.is_none() && state.backlog() > BACKLOG {
            state = self.wait_or_help(state);
        }
        take_error(&mut state)
    }

    /// Encode what is queued and close every column: the row group's chunks, in schema order.
    pub(crate) fn finish(&mut self) -> Result<Vec<ArrowColumnChunk>, ParquetError> {
        let mut state = self.shared.lock();
        for column in &mut state.columns {
            column.jobs.push_back(Job::Close);
        }
        self.shared.queued.notify_all();
        while state.error.is_none() && state.columns.iter().any(|c| c.chunk.is_none()) {
            state = self.wait_or_help(state);
        }
        let columns = std::mem::take(&mut state.columns);
        state.open = false;
        take_error(&mut state)?;
        columns
            .into_iter()
            .map(|c| {
                c.chunk
                    .map(|chunk| *chunk)
                    .ok_or_else(|| ParquetError::General("a column was not closed".into()))
            })
            .collect()
    }

    fn wait_or_help<'a>(&'a self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let (state, ran) = self.shared.help(state);
        if ran {
            return state;
        }
        self.shared
            .done
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn take_error(state: &mut State) -> Result<(), ParquetError> {
    match state.error.take() {
        Some(e) => {
            // The row group is abandoned: its writers and queued slices go.
            state.columns.clear();
            state.open = false;
            Err(e)
        }
        None => Ok(()),
    }
}

impl Drop for ColumnEncoders {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            // Whatever is still queued (a writer given up on an error) is not encoded.
            for column in &mut state.columns {
                column.jobs.clear();
            }
        }
        self.shared.queued.notify_all();
        for thread in self.threads.drain(..) {
            // A thread's panics are caught around each job; nothing is left to report here.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int32Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
    use parquet::arrow::arrow_writer::compute_leaves;

    use super::*;

    /// Writers for one row group of a file with a string column and an integer column.
    fn writers() -> (Field, Field, Vec<ArrowColumnWriter>) {
        let text = Field::new("text", DataType::Utf8, false);
        let number = Field::new("number", DataType::Int32, false);
        let (_, factory) = ArrowWriter::try_new(Vec::new(), schema(&text, &number), None)
            .unwrap()
            .into_serialized_writer()
            .unwrap();
        (text, number, factory.create_column_writers(0).unwrap())
    }

    fn schema(text: &Field, number: &Field) -> Arc<Schema> {
        Arc::new(Schema::new(vec![text.clone(), number.clone()]))
    }

    /// Rows `from..from + n`: their texts and their numbers.
    fn columns(from: i32, n: i32) -> (ArrayRef, ArrayRef) {
        let texts = StringArray::from_iter_values((from..from + n).map(|i| format!("value {i}")));
        let numbers = Int32Array::from_iter_values(from..from + n);
        (Arc::new(texts), Arc::new(numbers))
    }

    /// The leaves of rows `from..from + n`.
    fn leaves(text: &Field, number: &Field, from: i32, n: i32) -> Vec<ArrowLeafColumn> {
        let (texts, numbers) = columns(from, n);
        let mut out = compute_leaves(text, &texts).unwrap();
        out.extend(compute_leaves(number, &numbers).unwrap());
        out
    }

    /// `threads` threads encoding a row group of the two columns.
    fn started(threads: usize) -> (Field, Field, ColumnEncoders) {
        let (text, number, writers) = writers();
        let mut encoders = ColumnEncoders::start(threads).unwrap();
        encoders.begin(writers);
        (text, number, encoders)
    }

    #[test]
    fn the_chunks_make_a_file_with_every_row_in_order() {
        for threads in [0, 1, 3] {
            let (text, number, mut encoders) = started(threads);
            for batch in 0..10 {
                encoders
                    .write(leaves(&text, &number, batch * 100, 100))
                    .unwrap();
            }
            let chunks = encoders.finish().unwrap();
            assert!(!encoders.begun());

            let mut out = Vec::new();
            let (mut file, _) = ArrowWriter::try_new(&mut out, schema(&text, &number), None)
                .unwrap()
                .into_serialized_writer()
                .unwrap();
            let mut group = file.next_row_group().unwrap();
            for chunk in chunks {
                chunk.append_to_row_group(&mut group).unwrap();
            }
            group.close().unwrap();
            file.close().unwrap();

            let batches: Vec<_> = ParquetRecordBatchReader::try_new(Bytes::from(out), 10_000)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let (texts, numbers) = columns(0, 1000);
            assert_eq!(batches.len(), 1, "{threads} threads");
            assert_eq!(batches[0].column(0), &texts, "{threads} threads");
            assert_eq!(batches[0].column(1), &numbers, "{threads} threads");
        }
    }

    #[test]
    fn a_failing_column_is_an_error_not_a_hang_or_a_panic() {
        for threads in [0, 1, 3] {
            let (text, number, mut encoders) = started(threads);
            encoders.write(leaves(&text, &number, 0, 10)).unwrap();
            // The integer leaf handed to the string column's writer and the other way round.
            let mut swapped = leaves(&text, &number, 0, 10);
            swapped.reverse();
            let mut failed = encoders.write(swapped).is_err();
            for _ in 0..5 {
                failed |= encoders.write(leaves(&text, &number, 0, 10)).is_err();
            }
            failed |= encoders.finish().is_err();
            assert!(failed, "{threads} threads: the bad leaves were accepted");
            assert!(!encoders.begun());
        }
    }
}
