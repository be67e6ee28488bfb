//! Batched generation with a KV cache: many sequences at once, seeded sampling
//! (temperature, top-k, top-p), stop tokens, a stop check for strings, and the
//! log-probability of every sampled token.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::prefix::Prefix;
use crate::qwen2::{KvCache, Qwen2};

/// The sampler's settings: the one sampling type ([`ChatOptions`]) and the tokens that end a
/// sequence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sampling {
    /// Temperature (0: greedy), top-p (1: off), top-k (0: off), the most new tokens per
    /// sequence (`max_tokens`), and the seed (none: 0) from which [`generate`] derives each
    /// sequence's own.
    pub options: ChatOptions,
    /// Tokens that end a sequence (kept in the output).
    pub stop_tokens: Vec<i64>,
}

impl Sampling {
    /// The sampler's seed.
    pub fn seed(&self) -> u64 {
        self.options.seed.unwrap_or(0)
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token.
    StopToken,
    /// The caller's stop check (a stop string).
    StopCheck,
    /// `max_new_tokens`.
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New token ids.
    pub ids: Vec<i64>,
    /// Log-probability of each new token under the sampling distribution's model (before
    /// temperature and truncation).
    pub logprobs: Vec<f32>,
    /// Why it stopped.
    pub finish: Finish,
}

/// Pick a token from `logits` (one row).
fn sample(logits: &[f32], s: &Sampling, rng: &mut ChaCha8Rng) -> usize {
    if s.options.temperature <= 0.0 {
        return logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0;
    }
    let t = s.options.temperature as f32;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, ((v - max) / t).exp()))
        .collect();
    if s.options.top_k > 0 || s.options.top_p < 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if s.options.top_k > 0 {
            probs.truncate(s.options.top_k.max(1));
        }
        if s.options.top_p < 1.0 {
            let total: f32 = probs.iter().map(|p| p.1).sum();
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p.1 / total;
                if acc >= s.options.top_p as f32 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep.max(1));
        }
    }
    let total: f32 = probs.iter().map(|p| p.1).sum();
    let mut x = rng.random::<f32>() * total;
    for (i, p) in &probs {
        x -= p;
        if x <= 0.0 {
            return *i;
        }
    }
    probs.last().map_or(0, |p| p.0)
}

/// Fewest sequences worth a worker thread of their own.
const MIN_SHARD: usize = 8;

/// The sampler seed of sequence `index` of a call to [`generate`] seeded with `seed`.
fn row_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Continue each prompt. `stop_check(i, new_ids)` may end sequence `i` early (stop strings).
///
/// On the CPU, a batch is split into one shard per torch thread, and each shard runs on a
/// thread of its own with one intra-op thread: a decode step is many small kernels, and two
/// cores each stepping half the batch beat two cores sharing every kernel (and waiting for
/// each other at the end of each). Sequence `i` draws from the same seeded sampler whichever
/// shard it lands in.
pub fn generate(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    s: &Sampling,
    pad: i64,
    stop_check: impl Fn(usize, &[i64]) -> bool + Sync,
) -> Result<Vec<Generation>, ModelError> {
    let reuse = prompts.iter().map(|_| None).collect();
    let seeds: Vec<u64> = (0..prompts.len()).map(|i| row_seed(s.seed(), i)).collect();
    Ok(generate_reusing(model, prompts, reuse, &seeds, s, pad, false, stop_check)?.0)
}

/// [`generate`], with `reuse[i]` (from [`crate::prefix::PrefixCache::lookup`]) the cached
/// keys and values of the start of prompt `i`, which is then prefilled only from there, and
/// `seeds[i]` the seed of sequence `i`'s own sampler (so that what it samples does not depend
/// on the other sequences of the call). With `keep`, also returns each sequence's keys and
/// values (its prompt and what it generated) for the next call to reuse.
#[allow(clippy::too_many_arguments)]
pub fn generate_reusing(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    reuse: Vec<Option<Prefix>>,
    seeds: &[u64],
    s: &Sampling,
    pad: i64,
    keep: bool,
    stop_check: impl Fn(usize, &[i64]) -> bool + Sync,
) -> Result<(Vec<Generation>, Vec<Prefix>), ModelError> {
    let n = prompts.len();
    if reuse.len() != n || seeds.len() != n {
        return Err(ModelError::Torch(
            "one reuse entry and one seed per prompt are needed".into(),
        ));
    }
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
    let shards = threads.min(n / MIN_SHARD);
    if shards < 2 || model.device() != Device::Cpu {
        return generate_shard(model, prompts, reuse, (0, seeds), s, pad, keep, &stop_check);
    }
    let size = n.div_ceil(shards);
    let mut reuse = reuse.into_iter();
    let parts: Vec<Vec<Option<Prefix>>> = prompts
        .chunks(size)
        .map(|c| reuse.by_ref().take(c.len()).collect())
        .collect();
    let ready = std::sync::Barrier::new(parts.len() + 1);
    type Shard = Result<(Vec<Generation>, Vec<Prefix>), ModelError>;
    let results: Vec<Shard> = std::thread::scope(|scope| {
        let workers: Vec<_> = prompts
            .chunks(size)
            .zip(parts)
            .zip(seeds.chunks(size))
            .enumerate()
            .map(|(k, ((chunk, part), seeds))| {
                let replica = model.replica();
                let (ready, stop_check) = (&ready, &stop_check);
                scope.spawn(move || {
                    // Settle this thread's lazy thread-count set-up before choosing one.
                    let _ = tch::get_num_threads();
                    tch::set_num_threads(1);
                    ready.wait();
                    let at = (k * size, seeds);
                    generate_shard(&replica, chunk, part, at, s, pad, keep, stop_check)
                })
            })
            .collect();
        // Setting a thread's count also sets torch's default for threads yet to start:
        // put it back once every worker has its own.
        ready.wait();
        tch::set_num_threads(i32::try_from(threads).unwrap_or(1));
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(ModelError::Torch("a generation worker panicked".into()))
                })
            })
            .collect()
    });
    let (mut out, mut kept) = (Vec::with_capacity(n), Vec::new());
    for r in results {
        let (g, k) = r?;
        out.extend(g);
        kept.extend(k);
    }
    Ok((out, kept))
}

/// [`generate_reusing`] on one thread; `offset` is the index of `prompts[0]` in the whole
/// batch, `seeds` the shard's own.
#[allow(clippy::too_many_arguments)]
fn generate_shard(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    reuse: Vec<Option<Prefix>>,
    (offset, seeds): (usize, &[u64]),
    s: &Sampling,
    pad: i64,
    keep: bool,
    stop_check: &(impl Fn(usize, &[i64]) -> bool + Sync),
) -> Result<(Vec<Generation>, Vec<Prefix>), ModelError> {
    let n = prompts.len();
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let positions = model.config.max_position_embeddings as usize;
    // Each sequence's own cap: the positions left after its own prompt, so what it
    // generates never depends on the other prompts of its batch.
    let caps: Vec<usize> = prompts
        .iter()
        .map(|p| s.options.max_tokens.min(positions.saturating_sub(p.len())))
        .collect();
    let max_new = caps.iter().copied().max().unwrap_or(0);
    let device: Device = model.device();
    let Start {
        mut input,
        mut attention,
        mut cache,
    } = start(model, prompts, reuse, pad, max_new)?;
    let mut out: Vec<Generation> = (0..n)
        .map(|_| Generation {
            ids: Vec::new(),
            logprobs: Vec::new(),
            finish: Finish::Length,
        })
        .collect();
    let mut live: Vec<usize> = (0..n).collect();
    let mut rngs: Vec<ChaCha8Rng> = seeds
        .iter()
        .map(|&seed| ChaCha8Rng::seed_from_u64(seed))
        .collect();
    let mut kept = Vec::new();
    tch::no_grad(|| -> Result<(), ModelError> {
        for _ in 0..max_new {
            let last = model.forward_last(&input, &attention, Some(&mut cache));
            // `live` is in ascending order: the samplers of its sequences, in its order.
            let mut samplers: Vec<(&Sampling, &mut ChaCha8Rng)> = rngs
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| live.binary_search(i).is_ok())
                .map(|(_, rng)| (s, rng))
                .collect();
            let picked = pick(&last, &mut samplers)?;
            let mut next = Vec::with_capacity(live.len());
            let mut still = Vec::with_capacity(live.len());
            for (row, &seq) in live.iter().enumerate() {
                let (tok, lp) = picked[row];
                let g = &mut out[seq];
                g.ids.push(tok as i64);
                g.logprobs.push(lp);
                if s.stop_tokens.contains(&(tok as i64)) {
                    g.finish = Finish::StopToken;
                } else if stop_check(offset + seq, &g.ids) {
                    g.finish = Finish::StopCheck;
                } else if g.ids.len() >= caps[seq] {
                    g.finish = Finish::Length;
                } else {
                    still.push(row as i64);
                    next.push(tok as i64);
                }
            }
            if keep {
                // A finished sequence's keys and values, before its row leaves the cache:
                // its real positions (the prompt and every token fed back, that is all it
                // generated but the last).
                let mut s = 0;
                for (row, &seq) in live.iter().enumerate() {
                    if still.get(s) == Some(&(row as i64)) {
                        s += 1;
                        continue;
                    }
                    let g = &out[seq];
                    let tokens: Vec<i64> = prompts[seq]
                        .iter()
                        .chain(&g.ids[..g.ids.len() - 1])
                        .copied()
                        .collect();
                    kept.extend(keep_row(&cache, &attention, row as i64, tokens));
                }
            }
            live = still.iter().map(|&r| live[r as usize]).collect();
            if live.is_empty() {
                break;
            }
            let keep = Tensor::from_slice(&still).to_device(device);
            if (still.len() as i64) < attention.size()[0] {
                cache.select(&keep);
                attention = attention.index_select(0, &keep);
            }
            let ones = Tensor::ones([live.len() as i64, 1], (Kind::Int64, device));
            attention = Tensor::cat(&[&attention, &ones], 1);
            input = Tensor::from_slice(&next)
                .view([live.len() as i64, 1])
                .to_device(device);
        }
        Ok(())
    })?;
    Ok((out, kept))
}

/// What the first forward pass of a batch takes: the prompts' ids, the attention over what is
/// cached and what is fed, and the cache (reused starts already in it).
pub(crate) struct Start {
    pub(crate) input: Tensor,
    pub(crate) attention: Tensor,
    pub(crate) cache: KvCache,
}

/// The first forward pass of `prompts`, each row's reused start (`reuse`, when it is the
/// prompt's own and leaves at least its last token to run) cached, the rest fed; room for
/// `reserve` more positions.
pub(crate) fn start(
    model: &Qwen2,
    prompts: &[Vec<i64>],
    reuse: Vec<Option<Prefix>>,
    pad: i64,
    reserve: usize,
) -> Result<Start, ModelError> {
    let n = prompts.len();
    if prompts.iter().any(Vec::is_empty) {
        return Err(ModelError::Torch(
            "an empty prompt cannot be continued".into(),
        ));
    }
    let positions = model.config.max_position_embeddings as usize;
    if let Some(p) = prompts.iter().find(|p| p.len() >= positions) {
        return Err(ModelError::Torch(format!(
            "a prompt of {} tokens fills the model's {positions} positions",
            p.len()
        )));
    }
    let reused: Vec<usize> = reuse
        .iter()
        .zip(prompts)
        .map(|(r, p)| {
            r.as_ref()
                .filter(|r| r.len() < p.len() && p.starts_with(&r.tokens))
                .map_or(0, Prefix::len)
        })
        .collect();
    let device = model.device();
    let past = reused.iter().copied().max().unwrap_or(0);
    let width = prompts
        .iter()
        .zip(&reused)
        .map(|(p, r)| p.len() - r)
        .max()
        .unwrap_or(0);
    // Each row: its reused start, left-padded to `past`, then the rest of its prompt,
    // left-padded to `width`. Positions count real tokens only, so padding in the middle of
    // a row is as harmless as on its left.
    let mut ids = Vec::with_capacity(n * width);
    let mut mask = Vec::with_capacity(n * (past + width));
    for (p, &r) in prompts.iter().zip(&reused) {
        let rest = &p[r..];
        ids.extend(std::iter::repeat_n(pad, width - rest.len()).chain(rest.iter().copied()));
        mask.extend(
            std::iter::repeat_n(0i64, past - r)
                .chain(std::iter::repeat_n(1i64, r))
                .chain(std::iter::repeat_n(0i64, width - rest.len()))
                .chain(std::iter::repeat_n(1i64, rest.len())),
        );
    }
    let attention = Tensor::from_slice(&mask)
        .view([n as i64, (past + width) as i64])
        .to_device(device);
    let input = Tensor::from_slice(&ids)
        .view([n as i64, width as i64])
        .to_device(device);
    let cache = if past == 0 {
        model.cache_with_reserve(reserve)
    } else {
        KvCache::filled(stack_reused(&reuse, &reused, past)?, width + reserve)
    };
    Ok(Start {
        input,
        attention,
        cache,
    })
}

/// A token and its log-probability for each row of `last` (rows, vocab), row `r` drawn by
/// `samplers[r]`.
pub(crate) fn pick(
    last: &Tensor,
    samplers: &mut [(&Sampling, &mut ChaCha8Rng)],
) -> Result<Vec<(usize, f32)>, ModelError> {
    let last = last.to_kind(Kind::Float);
    let logp = last.log_softmax(-1, Kind::Float);
    let device = last.device();
    if device != Device::Cpu && samplers.iter().all(|(s, _)| s.options.temperature <= 0.0) {
        // Greedy on an accelerator: pick on the device and copy back two numbers per row
        // instead of two rows of the vocabulary (torch's argmax, like `sample`, takes the
        // first of equal maxima).
        let tok = last.argmax(-1, true);
        let lp = logp.gather(1, &tok, false);
        let toks = Vec::<i64>::try_from(tok.flatten(0, -1).to_device(Device::Cpu))?;
        let lps = Vec::<f32>::try_from(lp.flatten(0, -1).to_device(Device::Cpu))?;
        return Ok(toks.into_iter().map(|t| t as usize).zip(lps).collect());
    }
    let vocab = last.size()[1] as usize;
    let rows: Vec<f32> = Vec::<f32>::try_from(last.to_device(Device::Cpu).flatten(0, -1))?;
    let lps: Vec<f32> = Vec::<f32>::try_from(logp.to_device(Device::Cpu).flatten(0, -1))?;
    Ok(samplers
        .iter_mut()
        .enumerate()
        .map(|(row, (s, rng))| {
            let r = &rows[row * vocab..(row + 1) * vocab];
            let tok = sample(r, s, rng);
            (tok, lps[row * vocab + tok])
        })
        .collect())
}

/// Row `row`'s keys and values as a [`Prefix`] of `tokens` (every token it was fed), if its
/// real positions are exactly those.
pub(crate) fn keep_row(
    cache: &KvCache,
    attention: &Tensor,
    row: i64,
    tokens: Vec<i64>,
) -> Option<Prefix> {
    let real = attention.get(row).nonzero().squeeze_dim(1);
    (real.size()[0] == tokens.len() as i64).then(|| Prefix::new(tokens, cache.row(row, &real)))
}

/// The batch's starting cache: per layer, every row's reused keys and values left-padded
/// to `past` positions (zeros where the mask hides them).
fn stack_reused(
    reuse: &[Option<Prefix>],
    reused: &[usize],
    past: usize,
) -> Result<Vec<(Tensor, Tensor)>, ModelError> {
    let first = reuse
        .iter()
        .zip(reused)
        .find_map(|(r, &n)| r.as_ref().filter(|_| n > 0))
        .ok_or_else(|| ModelError::Torch("no reused prefix to stack".into()))?;
    let n = reuse.len() as i64;
    let past = past as i64;
    let mut layers = Vec::with_capacity(first.layers.len());
    for (l, (k0, _)) in first.layers.iter().enumerate() {
        let (heads, dim) = (k0.size()[0], k0.size()[2]);
        let options = (k0.kind(), k0.device());
        let k = Tensor::zeros([n, heads, past, dim], options);
        let v = Tensor::zeros([n, heads, past, dim], options);
        for (row, (r, &len)) in reuse.iter().zip(reused).enumerate() {
            let Some(r) = r.as_ref().filter(|_| len > 0) else {
                continue;
            };
            let (rk, rv) = r
                .layers
                .get(l)
                .ok_or_else(|| ModelError::Torch("a reused prefix lacks a layer".into()))?;
            let len = len as i64;
            k.get(row as i64)
                .narrow(1, past - len, len)
                .copy_(&rk.narrow(1, 0, len));
            v.get(row as i64)
                .narrow(1, past - len, len)
                .copy_(&rv.narrow(1, 0, len));
        }
        layers.push((k, v));
    }
    Ok(layers)
}
