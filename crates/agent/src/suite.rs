//! The built-in task suite: seeded multi-step arithmetic word problems solved with `calc`.
//!
//! One person's items change through events, one sentence each: has / finds / is given /
//! gives away / loses (one calculator op), buys or sells a bags of b (two ops: a product,
//! then the change), gets m times as many (one op), and an optional final "packs equally
//! into d boxes" (one op). Distractor sentences carry numbers that play no part. Results
//! of earlier ops feed later ones, and additions and subtractions within a stretch between
//! multiplications can happen in any order: the oracle accepts every valid order.

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scorch_tables::Task;
use serde::{Deserialize, Serialize};

/// A change to the running total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// +1 or -1.
    pub sign: i64,
    /// For "buys/sells `count` bags of `size`": the count; absent for a plain amount.
    pub count: Option<i64>,
    /// The amount, or the size of one bag.
    pub size: i64,
    /// The event's verb, used as the demonstration's thought.
    pub verb: String,
}

impl Term {
    /// The signed change.
    pub fn value(&self) -> i64 {
        self.sign * self.count.unwrap_or(1) * self.size
    }
    /// The unsigned amount.
    pub fn amount(&self) -> i64 {
        self.count.unwrap_or(1) * self.size
    }
}

/// A stretch of additive events, then an optional multiplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The changes, in story order.
    pub terms: Vec<Term>,
    /// "gets m times as many" after the changes.
    pub times: Option<i64>,
}

/// The solution structure of a task (kept in the task's metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct World {
    /// The starting amount.
    pub start: i64,
    /// The events.
    pub segments: Vec<Segment>,
    /// "packs equally into d boxes" at the end.
    pub divide: Option<i64>,
    /// Numbers of distractor sentences.
    pub distractors: Vec<i64>,
    /// Calculator ops of the canonical solution (final_answer excluded).
    pub ops: u32,
}

impl World {
    /// The total at the start of each segment, and after the last one.
    pub fn bases(&self) -> Vec<i64> {
        let mut out = vec![self.start];
        let mut total = self.start;
        for seg in &self.segments {
            total += seg.terms.iter().map(Term::value).sum::<i64>();
            if let Some(m) = seg.times {
                total *= m;
            }
            out.push(total);
        }
        out
    }
    /// The answer.
    pub fn answer(&self) -> i64 {
        let total = *self.bases().last().unwrap_or(&self.start);
        self.divide.map_or(total, |d| total / d)
    }
    /// Whether every quantity on the way to the answer has its own value, and no distractor
    /// equals a needed number: then a step's value says which quantity it is.
    pub fn unambiguous(&self) -> bool {
        let bases = self.bases();
        let mut values = Vec::new();
        for (j, seg) in self.segments.iter().enumerate() {
            for mask in 0u32..(1 << seg.terms.len()) {
                let sum: i64 = (0..seg.terms.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| seg.terms[i].value())
                    .sum();
                values.push(bases[j] + sum);
            }
            values.extend(
                seg.terms
                    .iter()
                    .filter(|t| t.count.is_some())
                    .map(Term::amount),
            );
            if seg.times.is_some() {
                values.push(bases[j + 1]);
            }
        }
        if self.divide.is_some() {
            values.push(self.answer());
        }
        let n = values.len();
        values.sort_unstable();
        values.dedup();
        let relevant = self.relevant();
        values.len() == n
            && !self
                .distractors
                .iter()
                .any(|d| relevant.contains(d) || values.contains(d))
    }

    /// Every number the solution needs, in story order.
    pub fn relevant(&self) -> Vec<i64> {
        let mut out = vec![self.start];
        for seg in &self.segments {
            for t in &seg.terms {
                out.extend(t.count);
                out.push(t.size);
            }
            out.extend(seg.times);
        }
        out.extend(self.divide);
        out
    }
}

/// Which split, and so how hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training tasks: 2–5 ops, numbers ≤ 60.
    Train,
    /// Held-out tasks of the training distribution.
    Test,
    /// More steps (5–7 ops) and larger numbers (≤ 150).
    Hard,
}

impl Split {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "test",
            Self::Hard => "hard",
        }
    }
    /// Parse a split name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "train" => Some(Self::Train),
            "test" => Some(Self::Test),
            "hard" => Some(Self::Hard),
            _ => None,
        }
    }
    fn ops(self) -> (u32, u32) {
        match self {
            Self::Train | Self::Test => (2, 5),
            Self::Hard => (5, 7),
        }
    }
    fn max_number(self) -> i64 {
        match self {
            Self::Train | Self::Test => 60,
            Self::Hard => 150,
        }
    }
    /// Seeds of different splits never meet: the split is mixed into every task's seed.
    fn salt(self) -> u64 {
        match self {
            Self::Train => 0x7472_6169_6e00_0000,
            Self::Test => 0x7465_7374_0000_0000,
            Self::Hard => 0x6861_7264_0000_0000,
        }
    }
}

const NAMES: &[(&str, &str)] = &[
    ("Ava", "she"),
    ("Ben", "he"),
    ("Cleo", "she"),
    ("Dan", "he"),
    ("Eli", "he"),
    ("Fay", "she"),
    ("Gus", "he"),
    ("Hana", "she"),
    ("Ivan", "he"),
    ("Jo", "she"),
    ("Kai", "he"),
    ("Lena", "she"),
    ("Max", "he"),
    ("Nora", "she"),
    ("Omar", "he"),
    ("Pia", "she"),
    ("Raj", "he"),
    ("Sara", "she"),
];
const ITEMS: &[&str] = &[
    "apples", "pencils", "stamps", "marbles", "cards", "shells", "coins", "stickers", "beads",
    "books",
];
const OTHERS: &[&str] = &[
    "cousin",
    "neighbour",
    "teacher",
    "brother",
    "sister",
    "friend",
];

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Generate one world with `ops` calculator ops.
fn world(rng: &mut impl Rng, split: Split, ops: u32) -> Option<World> {
    let max = split.max_number();
    let small = |rng: &mut dyn rand::Rng, hi: i64| rng.random_range(2..=hi);
    let start = rng.random_range(5..=max);
    let mut total = start;
    let mut left = ops;
    let divide_wanted = left >= 2 && rng.random_bool(0.3);
    if divide_wanted {
        left -= 1;
    }
    let mut segments = vec![Segment {
        terms: Vec::new(),
        times: None,
    }];
    let mut times_used = false;
    while left > 0 {
        let roll = rng.random_range(0..10);
        let seg = segments.last_mut()?;
        if roll == 0 && !times_used && !seg.terms.is_empty() && total <= max * 2 {
            let m = rng.random_range(2..=4);
            seg.times = Some(m);
            total *= m;
            times_used = true;
            left -= 1;
            segments.push(Segment {
                terms: Vec::new(),
                times: None,
            });
            continue;
        }
        let product = left >= 2 && roll < 4;
        let (count, size) = if product {
            (Some(small(rng, 9)), small(rng, max.min(20)))
        } else {
            (None, small(rng, max))
        };
        let amount = count.unwrap_or(1) * size;
        let sign = if total - amount >= 1 && rng.random_bool(0.4) {
            -1
        } else {
            1
        };
        let verb = match (count.is_some(), sign, rng.random_range(0..2)) {
            (true, 1, _) => "buys",
            (true, _, _) => "sells",
            (false, 1, 0) => "finds",
            (false, 1, _) => "gets",
            (false, _, 0) => "gives",
            (false, _, _) => "loses",
        };
        seg.terms.push(Term {
            sign,
            count,
            size,
            verb: verb.into(),
        });
        total += sign * amount;
        left -= if product { 2 } else { 1 };
    }
    if segments
        .last()
        .is_some_and(|s| s.terms.is_empty() && s.times.is_none())
    {
        segments.pop();
    }
    let divide = if divide_wanted {
        let divisors: Vec<i64> = (2..=9)
            .filter(|d| total % d == 0 && total / d >= 1)
            .collect();
        if divisors.is_empty() {
            return None;
        }
        Some(divisors[rng.random_range(0..divisors.len())])
    } else {
        None
    };
    let n_distract = rng.random_range(1..=2);
    let distractors = (0..n_distract).map(|_| rng.random_range(2..=max)).collect();
    Some(World {
        start,
        segments,
        divide,
        distractors,
        ops,
    })
}

fn story(rng: &mut impl Rng, w: &World) -> String {
    let (name, pron) = NAMES[rng.random_range(0..NAMES.len())];
    let item = ITEMS[rng.random_range(0..ITEMS.len())];
    let poss = if pron == "she" { "her" } else { "his" };
    let mut sentences = vec![format!("{name} has {} {item}.", w.start)];
    for seg in &w.segments {
        for t in &seg.terms {
            let p = cap(pron);
            let s = match (t.verb.as_str(), t.count) {
                ("buys", Some(c)) => {
                    format!("{p} buys {c} bags with {} {item} in each bag.", t.size)
                }
                ("sells", Some(c)) => {
                    format!("{p} sells {c} boxes with {} {item} in each box.", t.size)
                }
                ("finds", _) => format!("{p} finds {} more {item}.", t.size),
                ("gets", _) => format!(
                    "A {} gives {} {} {item}.",
                    OTHERS[rng.random_range(0..OTHERS.len())],
                    if pron == "she" { "her" } else { "him" },
                    t.size
                ),
                ("gives", _) => format!("{p} gives away {} {item}.", t.size),
                _ => format!("{p} loses {} {item}.", t.size),
            };
            sentences.push(s);
        }
        if let Some(m) = seg.times {
            sentences.push(format!(
                "Then {poss} collection grows to {m} times as many {item}."
            ));
        }
    }
    for (i, d) in w.distractors.iter().enumerate() {
        let other = OTHERS[rng.random_range(0..OTHERS.len())];
        let s = if i % 2 == 0 {
            format!(
                "{} {other} has {d} {}.",
                cap(poss),
                ITEMS[rng.random_range(0..ITEMS.len())]
            )
        } else {
            format!("The shop is {d} minutes away.")
        };
        let at = rng.random_range(1..=sentences.len());
        sentences.insert(at, s);
    }
    match w.divide {
        Some(d) => sentences.push(format!(
            "{} packs all {poss} {item} equally into {d} boxes. How many {item} are in each box?",
            cap(pron)
        )),
        None => sentences.push(format!("How many {item} does {name} have now?")),
    }
    sentences.join(" ")
}

/// Task `index` of `split` for suite seed `seed`: the same inputs give the same task.
pub fn task(seed: u64, split: Split, index: u64) -> Task {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ split.salt() ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (lo, hi) = split.ops();
    loop {
        let ops = rng.random_range(lo..=hi);
        let Some(w) = world(&mut rng, split, ops) else {
            continue;
        };
        if w.answer() <= 0 || w.bases().iter().any(|b| *b <= 0) || !w.unambiguous() {
            continue;
        }
        let question = story(&mut rng, &w);
        let metadata = serde_json::json!({"world": w, "ops": w.ops}).to_string();
        return Task {
            task_id: format!("builtin-{}-{seed}-{index}", split.name()),
            suite: "builtin".into(),
            split: split.name().into(),
            question,
            answer: w.answer().to_string(),
            metadata,
        };
    }
}

/// `count` tasks of `split`, from index `offset`.
pub fn tasks(seed: u64, split: Split, offset: u64, count: u64) -> Vec<Task> {
    (offset..offset.saturating_add(count))
        .map(|i| task(seed, split, i))
        .collect()
}

/// The world of a built-in task, from its metadata.
pub fn world_of(task: &Task) -> Option<World> {
    let v: serde_json::Value = serde_json::from_str(&task.metadata).ok()?;
    serde_json::from_value(v.get("world")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_deterministic_and_well_formed() {
        for split in [Split::Train, Split::Test, Split::Hard] {
            let a = tasks(7, split, 0, 200);
            assert_eq!(a, tasks(7, split, 0, 200));
            for t in &a {
                let w = world_of(t).expect("world");
                assert_eq!(t.answer, w.answer().to_string());
                let (lo, hi) = split.ops();
                assert!((lo..=hi).contains(&w.ops), "{} ops", w.ops);
                let counted: u32 = w
                    .segments
                    .iter()
                    .map(|s| {
                        s.terms
                            .iter()
                            .map(|t| if t.count.is_some() { 2 } else { 1 })
                            .sum::<u32>()
                            + u32::from(s.times.is_some())
                    })
                    .sum::<u32>()
                    + u32::from(w.divide.is_some());
                assert_eq!(counted, w.ops, "{}", t.question);
                assert!(w.answer() > 0);
                for n in w.relevant() {
                    assert!(
                        t.question.contains(&n.to_string()),
                        "{n} missing in {}",
                        t.question
                    );
                }
                assert!(!w.distractors.is_empty());
            }
        }
        assert_ne!(
            task(7, Split::Train, 0).question,
            task(7, Split::Test, 0).question
        );
    }

    #[test]
    fn every_op_count_occurs() {
        let ops: std::collections::BTreeSet<u32> = tasks(1, Split::Train, 0, 300)
            .iter()
            .map(|t| world_of(t).unwrap().ops)
            .collect();
        assert_eq!(ops.into_iter().collect::<Vec<_>>(), vec![2, 3, 4, 5]);
    }
}
