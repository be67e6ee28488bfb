//! Keys and values kept from one generation call to the next, so that a conversation's next
//! turn is prefilled only from where it differs from what was generated before (what vLLM
//! calls automatic prefix caching).
//!
//! An agent's episode sends its whole chat every turn: the plan, every step and every
//! observation so far. Without this cache each turn runs the model over all of it again;
//! measured on the embedded student's `hard` evaluation (300 tasks, about 7 turns each), the
//! prompts' prefill was 75% of generation time. A key or value at position `t` depends only
//! on the tokens up to `t`, so the cached positions of the longest common start are exactly
//! what a fresh prefill would compute (up to float rounding: the products run in other
//! shapes).

use tch::Tensor;

/// The keys and values of one token sequence: per layer, (kv_heads, len, head_dim) each.
#[derive(Debug)]
pub struct Prefix {
    pub(crate) tokens: Vec<i64>,
    pub(crate) layers: Vec<(Tensor, Tensor)>,
}

impl Prefix {
    /// A sequence's keys and values (per layer, (kv_heads, tokens, head_dim) each).
    pub fn new(tokens: Vec<i64>, layers: Vec<(Tensor, Tensor)>) -> Self {
        Self { tokens, layers }
    }

    /// Tokens covered.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no token is covered.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Memory held by the keys and values.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|(k, v)| {
                let size = |t: &Tensor| t.numel() * t.kind().elt_size_in_bytes();
                size(k) + size(v)
            })
            .sum()
    }

    /// The first `len` tokens' keys and values (views, no copy).
    fn first(&self, len: usize) -> Self {
        let n = len as i64;
        Self {
            tokens: self.tokens[..len].to_vec(),
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (k.narrow(1, 0, n), v.narrow(1, 0, n)))
                .collect(),
        }
    }
}

/// Sequences kept for their next turn, sorted by their tokens, within a memory budget: the
/// last call's (a batching caller replaces them each call), or each as it ends (a
/// continuous batch inserts them, and the oldest go first when the budget is spent).
#[derive(Debug)]
pub struct PrefixCache {
    /// Each sequence with when it came.
    entries: Vec<(Prefix, u64)>,
    budget: usize,
    spent: usize,
    clock: u64,
}

impl PrefixCache {
    /// An empty cache that keeps at most `budget` bytes of keys and values.
    pub fn new(budget: usize) -> Self {
        Self {
            entries: Vec::new(),
            budget,
            spent: 0,
            clock: 0,
        }
    }

    /// Forget everything (the weights changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.spent = 0;
    }

    /// Sequences held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Memory held.
    pub fn bytes(&self) -> usize {
        self.spent
    }

    /// The held sequence sharing the longest start with `prompt`: its place and how many
    /// tokens it covers (at most all of `prompt` but its last token, whose logits the next
    /// token needs).
    fn best(&self, prompt: &[i64]) -> Option<(usize, usize)> {
        // In sorted order, the sequence sharing the longest start with `prompt` is next to
        // where `prompt` would go.
        let at = self
            .entries
            .partition_point(|(e, _)| e.tokens.as_slice() < prompt);
        let common = |e: &Prefix| {
            e.tokens
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let (len, i) = [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|i| self.entries.get(i).map(|(e, _)| (common(e), i)))
            .max_by_key(|(n, _)| *n)?;
        let len = len.min(prompt.len().saturating_sub(1));
        (len > 0).then_some((i, len))
    }

    /// The longest start of `prompt` that a held sequence covers, as views of its keys and
    /// values: at most all of `prompt` but its last token.
    pub fn lookup(&self, prompt: &[i64]) -> Option<Prefix> {
        let (i, len) = self.best(prompt)?;
        Some(self.entries[i].0.first(len))
    }

    /// [`lookup`](Self::lookup), and the sequence it came from is let go if `prompt`
    /// continues all of it (its episode's next turn: nothing else will want it).
    pub fn take(&mut self, prompt: &[i64]) -> Option<Prefix> {
        let (i, len) = self.best(prompt)?;
        let out = self.entries[i].0.first(len);
        if prompt.starts_with(&self.entries[i].0.tokens) {
            let (gone, _) = self.entries.remove(i);
            self.spent -= gone.bytes();
        }
        Some(out)
    }

    /// Hold `entries` (this call's sequences) in place of the old ones, in their order until
    /// the budget is spent.
    pub fn replace(&mut self, entries: Vec<Prefix>) {
        self.clear();
        for e in entries {
            let b = e.bytes();
            if self.spent + b > self.budget {
                continue;
            }
            self.spent += b;
            self.clock += 1;
            self.entries.push((e, self.clock));
        }
        self.entries.sort_by(|a, b| a.0.tokens.cmp(&b.0.tokens));
    }

    /// Hold `entry` too, letting the oldest go until it fits (one larger than the whole
    /// budget is not kept).
    pub fn insert(&mut self, entry: Prefix) {
        let b = entry.bytes();
        if b > self.budget {
            return;
        }
        while self.spent + b > self.budget {
            let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].1) else {
                break;
            };
            let (gone, _) = self.entries.remove(oldest);
            self.spent -= gone.bytes();
        }
        self.clock += 1;
        self.spent += b;
        let at = self
            .entries
            .partition_point(|(e, _)| e.tokens < entry.tokens);
        self.entries.insert(at, (entry, self.clock));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tokens: &[i64]) -> Prefix {
        let n = tokens.len() as i64;
        let kv = Tensor::arange(n, (tch::Kind::Float, tch::Device::Cpu)).view([1, n, 1]);
        Prefix::new(tokens.to_vec(), vec![(kv.copy(), kv)])
    }

    #[test]
    fn lookup_finds_the_longest_shared_start_and_leaves_the_last_token() {
        let mut c = PrefixCache::new(usize::MAX);
        c.replace(vec![
            entry(&[1, 2, 3, 4, 5]),
            entry(&[1, 2, 9]),
            entry(&[7, 8]),
        ]);
        // Shares 1 2 3 4 with the first.
        let p = c.lookup(&[1, 2, 3, 4, 6, 6]).unwrap();
        assert_eq!(p.tokens, vec![1, 2, 3, 4]);
        assert_eq!(p.layers[0].0.size(), vec![1, 4, 1]);
        // A prompt that the cached sequence covers entirely keeps its last token to run.
        let p = c.lookup(&[1, 2, 3]).unwrap();
        assert_eq!(p.tokens, vec![1, 2]);
        let p = c.lookup(&[1, 2, 9, 9, 9]).unwrap();
        assert_eq!(p.tokens, vec![1, 2, 9]);
        assert!(c.lookup(&[5, 5]).is_none());
        assert!(c.lookup(&[7]).is_none());
        c.clear();
        assert!(c.lookup(&[1, 2, 3, 4, 6]).is_none());
    }

    #[test]
    fn replace_keeps_what_the_budget_holds() {
        let one = entry(&[1, 2]).bytes();
        let mut c = PrefixCache::new(one * 2);
        c.replace(vec![entry(&[3, 4]), entry(&[1, 2]), entry(&[5, 6])]);
        assert_eq!(c.len(), 2);
        assert!(c.bytes() <= one * 2);
        assert!(c.lookup(&[5, 6, 7]).is_none());
        assert!(c.lookup(&[1, 2, 7]).is_some());
    }

    #[test]
    fn insert_lets_the_oldest_go_and_take_lets_a_continued_sequence_go() {
        let one = entry(&[1, 2]).bytes();
        let mut c = PrefixCache::new(one * 2);
        c.insert(entry(&[5, 6]));
        c.insert(entry(&[1, 2]));
        c.insert(entry(&[3, 4]));
        assert_eq!(c.len(), 2, "the budget holds two");
        assert_eq!(c.bytes(), one * 2);
        assert!(c.lookup(&[5, 6, 7]).is_none(), "the oldest went first");
        assert!(c.lookup(&[3, 4, 7]).is_some());
        // A prompt that shares only a start gets it, and leaves the sequence for others.
        assert_eq!(c.take(&[1, 9]).unwrap().tokens, vec![1]);
        assert_eq!(c.take(&[3, 7]).unwrap().tokens, vec![3]);
        assert_eq!(c.len(), 2);
        // A prompt that continues it takes it.
        assert_eq!(c.take(&[1, 2, 8]).unwrap().tokens, vec![1, 2]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), one);
        assert!(c.lookup(&[1, 2, 8]).is_none());
    }
}
