//! Continuous batching for the in-process student: requests join the running batch as they
//! come, rather than in rounds of one call each.
//!
//! Episodes that advance on their own each send their next request when their tool call
//! returns. Here those requests wait in one queue; a few shard threads (one per torch thread,
//! each with one intra-op thread, as [`crate::generate`] splits a batch) each hold a batch of
//! sequences over one KV cache. Every step a shard feeds its sequences their last token; when
//! enough requests wait, it also prefills them (from the keys and values their episode's last
//! turn kept) and adds their rows to its cache, so a sequence that finishes early is replaced
//! at once and a slow episode holds up only itself. Each request samples with its own seed,
//! so what it gets does not depend on its batch, its shard or the order requests came in.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use scorch_agent::llm::ChatOptions;
use tch::{Kind, Tensor};
use tokio::sync::oneshot;

use crate::ModelError;
use crate::checkpoint::Checkpoint;
use crate::generate::{Finish, Generation, Sampling, Start, keep_row, pick, start};
use crate::openai::ChatResult;
use crate::policy::Request;
use crate::prefix::PrefixCache;
use crate::qwen2::{KvCache, Qwen2};
use crate::text::{Text, no_room};

/// Most sequences in one shard's batch.
const SHARD_ROWS: usize = 64;

/// How long an idle shard waits for a request before its thread ends (the next request
/// starts the shards again, a fraction of a millisecond).
const LINGER: Duration = Duration::from_millis(20);

/// A request and where its reply goes.
pub(crate) struct Job {
    pub(crate) request: Request,
    pub(crate) options: ChatOptions,
    pub(crate) reply: oneshot::Sender<Result<ChatResult, ModelError>>,
}

/// The requests waiting for a shard, and the shards' state.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Whether shard threads are running (they take the checkpoint while they do).
    running: bool,
    /// Shard threads alive.
    shards: usize,
    /// Sequences in the shards' batches.
    live: usize,
}

/// The queue that requests wait in, shared by the model's clones and its shards.
#[derive(Default)]
pub(crate) struct Engine {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Engine {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `job`; starts the shards (with `run`, on a thread of its own) if none runs.
    pub(crate) fn submit(&self, job: Job, run: impl FnOnce() + Send + 'static) {
        let mut q = self.queue();
        q.jobs.push_back(job);
        if !q.running {
            q.running = true;
            std::thread::spawn(run);
        }
        drop(q);
        self.ready.notify_all();
    }
}

/// Serve the queue until it stays empty: one shard per torch thread, each with a replica of
/// the model and one intra-op thread, the checkpoint held (training waits) all the while.
pub(crate) fn serve(
    checkpoint: &Mutex<Checkpoint>,
    prefixes: &Mutex<PrefixCache>,
    engine: &Engine,
) {
    let ck = checkpoint.lock().unwrap_or_else(PoisonError::into_inner);
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
    let shards = if ck.model.device() == tch::Device::Cpu {
        threads
    } else {
        1
    };
    engine.queue().shards = shards;
    let text = Text::of(&ck);
    let ready = std::sync::Barrier::new(shards + 1);
    std::thread::scope(|scope| {
        for _ in 0..shards {
            let replica = ck.model.replica();
            let ready = &ready;
            scope.spawn(move || {
                if shards > 1 {
                    // Settle this thread's lazy thread-count set-up before choosing one.
                    let _ = tch::get_num_threads();
                    tch::set_num_threads(1);
                }
                ready.wait();
                Shard::new(text, &replica, prefixes, engine, shards).run();
            });
        }
        // Setting a thread's count also sets torch's default for threads yet to start: put
        // it back once every shard has its own.
        ready.wait();
        tch::set_num_threads(i32::try_from(threads).unwrap_or(1));
    });
}

/// A sequence of a shard's batch.
struct Row {
    job: Job,
    prompt: Vec<i64>,
    sampling: Sampling,
    rng: ChaCha8Rng,
    generation: Generation,
    /// Most new tokens: its own cap and the positions its prompt leaves.
    cap: usize,
    /// Prompt tokens whose keys and values came from the prefix cache.
    cached: u64,
}

/// One shard: its batch and the cache its rows share. A row is a slot of the cache: a
/// sequence that finishes frees its slot, and a request that joins takes a free one (its
/// keys and values written into it), so neither copies the others' keys and values.
struct Shard<'a> {
    text: Text<'a>,
    model: &'a Qwen2,
    prefixes: &'a Mutex<PrefixCache>,
    engine: &'a Engine,
    shards: usize,
    /// Each slot's sequence (`None`: free).
    slots: Vec<Option<Row>>,
    /// Keys and values of every slot (`None` while the batch is empty).
    cache: Option<KvCache>,
    /// (slots, positions): 1 where a slot's sequence has a real token.
    attention: Option<Tensor>,
    /// The padding token (what a free slot is fed).
    pad: i64,
}

impl<'a> Shard<'a> {
    fn new(
        text: Text<'a>,
        model: &'a Qwen2,
        prefixes: &'a Mutex<PrefixCache>,
        engine: &'a Engine,
        shards: usize,
    ) -> Self {
        Self {
            text,
            model,
            prefixes,
            engine,
            shards,
            slots: Vec::new(),
            cache: None,
            attention: None,
            pad: text.pad().unwrap_or(0),
        }
    }

    /// Sequences in the batch.
    fn live(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    fn run(mut self) {
        while let Some(jobs) = self.admit() {
            let before = self.live() + jobs.len();
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tch::no_grad(|| self.step(jobs))
            }));
            let failure = match step {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("generation failed inside libtorch".to_owned()),
            };
            if let Some(e) = failure {
                // The batch is lost: every sequence in it is answered with the error.
                for row in self.slots.drain(..).flatten() {
                    let _ = row.job.reply.send(Err(ModelError::Torch(e.clone())));
                }
                self.cache = None;
                self.attention = None;
            }
            // Rows that finished, and requests answered without joining, leave the count.
            self.engine.queue().live -= before - self.live();
        }
    }

    /// The requests to add to the batch now, waiting while the batch is empty and none
    /// comes; `None` once it stayed empty for [`LINGER`] (the thread ends).
    fn admit(&self) -> Option<Vec<Job>> {
        let mine = self.live();
        let mut q = self.engine.queue();
        loop {
            let waiting = q.jobs.len();
            // Prefilling costs a forward pass of its own: with a batch running, wait until
            // a quarter of its size is waiting. Each shard takes its share of all sequences.
            let share = (q.live + waiting).div_ceil(self.shards).max(1);
            let room = SHARD_ROWS.min(share).saturating_sub(mine);
            let take = if mine == 0 || waiting * 4 >= mine {
                waiting.min(room.max(usize::from(mine == 0)))
            } else {
                0
            };
            if take > 0 {
                q.live += take;
                return Some(q.jobs.drain(..take).collect());
            }
            if mine > 0 {
                return Some(Vec::new());
            }
            let (guard, wait) = self
                .engine
                .ready
                .wait_timeout(q, LINGER)
                .unwrap_or_else(PoisonError::into_inner);
            q = guard;
            if wait.timed_out() && q.jobs.is_empty() {
                q.shards -= 1;
                if q.shards == 0 {
                    q.running = false;
                }
                return None;
            }
        }
    }

    /// One step: every slot's next token (a free slot is fed padding and its output
    /// ignored), the new requests' prefill into free slots, a token sampled for each
    /// sequence, and the sequences that finished answered and their slots freed.
    fn step(&mut self, jobs: Vec<Job>) -> Result<(), ModelError> {
        let device = self.model.device();
        // Row of `logits` of each slot's sequence.
        let mut logits = Vec::new();
        let mut at: Vec<Option<i64>> = vec![None; self.slots.len()];
        if let (true, Some(cache), Some(attention)) =
            (self.live() > 0, &mut self.cache, &mut self.attention)
        {
            let next: Vec<i64> = self
                .slots
                .iter()
                .map(|r| {
                    r.as_ref()
                        .and_then(|r| r.generation.ids.last().copied())
                        .unwrap_or(self.pad)
                })
                .collect();
            let n = next.len() as i64;
            // A free slot sees the padding it is fed, and nothing else.
            let ones = Tensor::ones([n, 1], (Kind::Int64, device));
            *attention = Tensor::cat(&[&*attention, &ones], 1);
            let input = Tensor::from_slice(&next).view([n, 1]).to_device(device);
            logits.push(self.model.forward_last(&input, attention, Some(cache)));
            for (i, r) in self.slots.iter().enumerate() {
                at[i] = r.as_ref().map(|_| i as i64);
            }
        }
        if let Some((fresh, placed)) = self.join(jobs)? {
            let offset = logits.first().map_or(0, |l| l.size()[0]);
            at.resize(self.slots.len(), None);
            for (j, slot) in placed.into_iter().enumerate() {
                at[slot] = Some(offset + j as i64);
            }
            logits.push(fresh);
        }
        let order: Vec<i64> = at.iter().flatten().copied().collect();
        if order.is_empty() {
            return Ok(());
        }
        let all = Tensor::cat(&logits, 0);
        let index = Tensor::from_slice(&order).to_device(all.device());
        let last = all.index_select(0, &index);
        let mut samplers: Vec<(&Sampling, &mut ChaCha8Rng)> = self
            .slots
            .iter_mut()
            .flatten()
            .map(|r| (&r.sampling, &mut r.rng))
            .collect();
        let picked = pick(&last, &mut samplers)?;
        let mut done = Vec::new();
        for ((slot, row), (tok, lp)) in self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.as_mut()?)))
            .zip(picked)
        {
            let g = &mut row.generation;
            g.ids.push(tok as i64);
            g.logprobs.push(lp);
            let stops = &row.job.options.stop;
            g.finish = if row.sampling.stop_tokens.contains(&(tok as i64)) {
                Finish::StopToken
            } else if self.text.stopped(stops, &g.ids) {
                Finish::StopCheck
            } else if g.ids.len() >= row.cap {
                Finish::Length
            } else {
                continue;
            };
            done.push(slot);
        }
        self.retire(&done)
    }

    /// Prefill `jobs` and put them in free slots (new ones where none is free); the logits
    /// of their last prompt token and the slot of each.
    fn join(&mut self, jobs: Vec<Job>) -> Result<Option<(Tensor, Vec<usize>)>, ModelError> {
        let mut rows = Vec::with_capacity(jobs.len());
        for job in jobs {
            let prompt = match self.text.encode(&job.request.messages) {
                Ok(p) => p,
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                    continue;
                }
            };
            let sampling = self.text.sampling(&job.options)?;
            let cap = sampling.options.max_tokens.min(self.text.room(&prompt));
            if cap == 0 {
                let _ = job.reply.send(Ok(no_room(prompt.len())));
                continue;
            }
            rows.push(Row {
                rng: ChaCha8Rng::seed_from_u64(job.request.seed),
                job,
                prompt,
                sampling,
                generation: Generation {
                    ids: Vec::new(),
                    logprobs: Vec::new(),
                    finish: Finish::Length,
                },
                cap,
                cached: 0,
            });
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let reuse: Vec<_> = {
            let mut prefixes = self.prefixes.lock().unwrap_or_else(PoisonError::into_inner);
            rows.iter().map(|r| prefixes.take(&r.prompt)).collect()
        };
        for (r, p) in rows.iter_mut().zip(&reuse) {
            r.cached = p.as_ref().map_or(0, |p| p.len() as u64);
        }
        let prompts: Vec<Vec<i64>> = rows.iter().map(|r| r.prompt.clone()).collect();
        // Rows that join a running batch are copied into its cache: theirs needs no room.
        let running = self.live() > 0;
        let reserve = if running {
            0
        } else {
            rows.iter().map(|r| r.cap).max().unwrap_or(0)
        };
        let Start {
            input,
            attention,
            mut cache,
        } = start(self.model, &prompts, reuse, self.pad, reserve)?;
        let logits = self
            .model
            .forward_last(&input, &attention, Some(&mut cache));
        let (Some(mine), Some(mask), true) =
            (self.cache.as_mut(), self.attention.as_mut(), running)
        else {
            // An empty batch: the new rows are the batch.
            let placed = (0..rows.len()).collect();
            self.slots = rows.into_iter().map(Some).collect();
            self.cache = Some(cache);
            self.attention = Some(attention);
            return Ok(Some((logits, placed)));
        };
        // Free slots first, in order; new slots for the rest.
        let free: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_none())
            .take(rows.len())
            .collect();
        let into = free.len() as i64;
        let device = mask.device();
        if into > 0 {
            let width = attention.size()[1];
            if mask.size()[1] < width {
                mine.widen(width);
                *mask = pad_left(mask, width);
            }
            let index = Tensor::from_slice(&free.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(device);
            if into == rows.len() as i64 {
                mine.place(&index, &cache);
            } else {
                let some = Tensor::arange(into, (Kind::Int64, device));
                mine.place(&index, &cache.rows(&some));
            }
            let rows_mask = pad_left(&attention.narrow(0, 0, into), mask.size()[1]);
            let _ = mask.index_copy_(0, &index, &rows_mask);
        }
        let extra = rows.len() as i64 - into;
        if extra > 0 {
            let rest = Tensor::arange_start(into, into + extra, (Kind::Int64, device));
            mine.append_rows(cache.rows(&rest));
            *mask = append_rows(mask, &attention.narrow(0, into, extra));
        }
        let mut placed = free;
        let mut rows = rows.into_iter();
        for (&slot, row) in placed.iter().zip(rows.by_ref()) {
            self.slots[slot] = Some(row);
        }
        for row in rows {
            placed.push(self.slots.len());
            self.slots.push(Some(row));
        }
        Ok(Some((logits, placed)))
    }

    /// Answer the sequences in slots `done` (their keys and values kept for their next turn)
    /// and free their slots; drop the positions no sequence needs any more, and the free
    /// slots once they are half the batch.
    fn retire(&mut self, done: &[usize]) -> Result<(), ModelError> {
        if done.is_empty() {
            return Ok(());
        }
        let (Some(cache), Some(attention)) = (self.cache.as_mut(), self.attention.as_mut()) else {
            return Err(ModelError::Torch("a running batch lost its cache".into()));
        };
        let mut kept = Vec::new();
        for &slot in done {
            let Some(row) = self.slots[slot].take() else {
                continue;
            };
            let g = &row.generation;
            // Its real positions: the prompt and every token fed back, all it generated but
            // the last.
            let tokens: Vec<i64> = row
                .prompt
                .iter()
                .chain(&g.ids[..g.ids.len() - 1])
                .copied()
                .collect();
            kept.extend(keep_row(cache, attention, slot as i64, tokens));
            let _ = attention.get(slot as i64).zero_();
            let stops = &row.job.options.stop;
            let out = self.text.reply(row.prompt.len(), g, row.cached, stops);
            let _ = row.job.reply.send(out);
        }
        {
            let mut prefixes = self.prefixes.lock().unwrap_or_else(PoisonError::into_inner);
            for k in kept {
                prefixes.insert(k);
            }
        }
        let live: Vec<i64> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .map(|i| i as i64)
            .collect();
        if live.is_empty() {
            self.slots.clear();
            self.cache = None;
            self.attention = None;
            return Ok(());
        }
        if live.len() * 2 <= self.slots.len() {
            let index = Tensor::from_slice(&live).to_device(attention.device());
            cache.select(&index);
            *attention = attention.index_select(0, &index);
            self.slots.retain(Option::is_some);
        }
        // Positions that every sequence hides (those of sequences that left) go.
        let used = attention.sum_dim_intlist(0, false, Kind::Int64).gt(0);
        let first = i64::try_from(used.to_kind(Kind::Int64).argmax(0, false))?;
        if first > 0 {
            cache.trim_front(first);
            let width = attention.size()[1];
            *attention = attention.narrow(1, first, width - first);
        }
        Ok(())
    }
}

/// `x` (rows, positions) left-padded with zeros to `width` positions.
fn pad_left(x: &Tensor, width: i64) -> Tensor {
    let (n, w) = (x.size()[0], x.size()[1]);
    if w >= width {
        return x.shallow_clone();
    }
    let zeros = Tensor::zeros([n, width - w], (x.kind(), x.device()));
    Tensor::cat(&[&zeros, x], 1)
}

/// `a`'s rows then `b`'s, the narrower left-padded with zeros (positions it hides).
fn append_rows(a: &Tensor, b: &Tensor) -> Tensor {
    let width = a.size()[1].max(b.size()[1]);
    Tensor::cat(&[pad_left(a, width), pad_left(b, width)], 0)
}

/// A request answered by the shards: queued, then awaited.
pub(crate) async fn complete(
    engine: &Arc<Engine>,
    run: impl FnOnce() + Send + 'static,
    request: Request,
    options: &ChatOptions,
) -> Result<ChatResult, ModelError> {
    let (tx, rx) = oneshot::channel();
    engine.submit(
        Job {
            request,
            options: options.clone(),
            reply: tx,
        },
        run,
    );
    rx.await
        .map_err(|_| ModelError::Torch("the generation thread ended without a reply".into()))?
}
