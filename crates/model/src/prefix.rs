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

/// The sequences of the last call, sorted by their tokens, within a memory budget.
#[derive(Debug)]
pub struct PrefixCache {
    entries: Vec<Prefix>,
    budget: usize,
}

impl PrefixCache {
    /// An empty cache that keeps at most `budget` bytes of keys and values.
    pub fn new(budget: usize) -> Self {
        Self {
            entries: Vec::new(),
            budget,
        }
    }

    /// Forget everything (the weights changed).
    pub fn clear(&mut self) {
        self.entries.clear();
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
        self.entries.iter().map(Prefix::bytes).sum()
    }

    /// The longest start of `prompt` that a held sequence covers, as views of its keys and
    /// values: at most all of `prompt` but its last token, whose logits the next token needs.
    pub fn lookup(&self, prompt: &[i64]) -> Option<Prefix> {
        // In sorted order, the sequence sharing the longest start with `prompt` is next to
        // where `prompt` would go.
        let at = self
            .entries
            .partition_point(|e| e.tokens.as_slice() < prompt);
        let common = |e: &Prefix| {
            e.tokens
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let best = [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|i| self.entries.get(i))
            .map(|e| (common(e), e))
            .max_by_key(|(n, _)| *n)?;
        let len = best.0.min(prompt.len().saturating_sub(1));
        (len > 0).then(|| best.1.first(len))
    }

    /// Hold `entries` (this call's sequences) in place of the old ones, in their order until
    /// the budget is spent.
    pub fn replace(&mut self, entries: Vec<Prefix>) {
        self.entries.clear();
        let mut spent = 0;
        for e in entries {
            let b = e.bytes();
            if spent + b > self.budget {
                continue;
            }
            spent += b;
            self.entries.push(e);
        }
        self.entries.sort_by(|a, b| a.tokens.cmp(&b.tokens));
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
}
