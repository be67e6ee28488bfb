//! The Qwen2 architecture, after HF `transformers`' `modeling_qwen2.py`: RMSNorm, rotary
//! embeddings (`rope_theta`), grouped-query attention through scaled-dot-product attention,
//! a SwiGLU MLP, tied or untied embeddings. Parameter paths are HF's keys
//! (`model.layers.0.self_attn.q_proj.weight`), so an HF folder loads unchanged.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::recompute::{Recorded, Segment};

/// `config.json` of a Qwen2 model, with HF's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Tokens in the vocabulary.
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the MLP.
    pub intermediate_size: i64,
    /// Decoder layers.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: i64,
    /// Longest sequence the rotary cache covers.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    /// Rotary base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Share the input embedding with the output projection.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Activation (only `silu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Beginning-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<i64>,
    /// Weights' dtype as HF names it (`float32`, `bfloat16`).
    #[serde(default = "default_dtype")]
    pub torch_dtype: String,
    /// Always `qwen2`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Always `["Qwen2ForCausalLM"]`.
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    /// HF's attention dropout (ignored; 0 at inference).
    #[serde(default)]
    pub attention_dropout: f64,
    /// HF's sliding-window switch (must be off).
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Every other field of the file, kept so a saved config says what it said.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_positions() -> i64 {
    32768
}
fn default_theta() -> f64 {
    10000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}
fn default_dtype() -> String {
    "float32".into()
}
fn default_model_type() -> String {
    "qwen2".into()
}
fn default_architectures() -> Vec<String> {
    vec!["Qwen2ForCausalLM".into()]
}

impl Config {
    /// Per-head width.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }
    /// Check what this implementation supports.
    pub fn validate(&self) -> Result<(), UnsupportedConfig> {
        if self.hidden_act != "silu" {
            return Err(UnsupportedConfig::Activation(self.hidden_act.clone()));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(UnsupportedConfig::Width);
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(UnsupportedConfig::Heads);
        }
        if self.use_sliding_window {
            return Err(UnsupportedConfig::SlidingWindow);
        }
        Ok(())
    }
}

/// A model config this implementation does not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedConfig {
    /// An activation other than SiLU.
    #[error("hidden_act `{0}` is not supported (only silu)")]
    Activation(String),
    /// Heads that do not divide the width.
    #[error("hidden_size must divide by num_attention_heads")]
    Width,
    /// Key-value heads that do not divide the heads.
    #[error("num_attention_heads must divide by num_key_value_heads")]
    Heads,
    /// Sliding-window attention.
    #[error("sliding-window attention is not supported")]
    SlidingWindow,
}

/// RMSNorm with a learned scale, computed in float32.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn replica(&self) -> Self {
        Self {
            weight: self.weight.shallow_clone(),
            eps: self.eps,
        }
    }
    fn new(vs: nn::Path, size: i64, eps: f64) -> Self {
        Self {
            weight: vs.ones("weight", &[size]),
            eps,
        }
    }
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        if kind == Kind::Float {
            // One fused op; in float32 it is HF's computation.
            let size = self.weight.size();
            return xs.rms_norm(size.as_slice(), Some(&self.weight), self.eps);
        }
        let x = xs.to_kind(Kind::Float);
        let var = x.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = x * (var + self.eps).rsqrt();
        normed.to_kind(kind) * self.weight.to_kind(kind)
    }
}

/// Rotary embeddings: `rotate_half` form, as in HF.
#[derive(Debug)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &Config, device: tch::Device) -> Self {
        let dim = cfg.head_dim();
        let inv: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / (cfg.rope_theta.powf(i as f64 / dim as f64)) as f32)
            .collect();
        let inv = Tensor::from_slice(&inv).to_device(device);
        let t = Tensor::arange(cfg.max_position_embeddings, (Kind::Float, device));
        let freqs = t.unsqueeze(1) * inv.unsqueeze(0);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        Self {
            cos: emb.cos(),
            sin: emb.sin(),
        }
    }

    /// cos and sin at `positions` (batch, time), shaped (batch, 1, time, head_dim).
    fn at(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let (b, t) = (positions.size()[0], positions.size()[1]);
        let flat = positions.flatten(0, -1);
        let cos = self
            .cos
            .index_select(0, &flat)
            .view([b, 1, t, -1])
            .to_kind(kind);
        let sin = self
            .sin
            .index_select(0, &flat)
            .view([b, 1, t, -1])
            .to_kind(kind);
        (cos, sin)
    }

    /// cos and sin at positions `start..start + len` of every row, shaped (1, 1, len, head_dim).
    fn span(&self, start: i64, len: i64, kind: Kind) -> (Tensor, Tensor) {
        let cos = self
            .cos
            .narrow(0, start, len)
            .view([1, 1, len, -1])
            .to_kind(kind);
        let sin = self
            .sin
            .narrow(0, start, len)
            .view([1, 1, len, -1])
            .to_kind(kind);
        (cos, sin)
    }

    /// Apply to `x` (batch, heads, time, head_dim) with the (cos, sin) of its positions.
    fn apply(x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Tensor {
        let half = x.size()[3] / 2;
        let x1 = x.narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let rotated = Tensor::cat(&[&x2.neg(), &x1], -1);
        x * cos + rotated * sin
    }
}

/// Cached keys and values of one layer: buffers of (batch, kv_heads, capacity, head_dim)
/// of which the first `len` positions are filled. Appends write in place; a full buffer
/// doubles, so a generation of T tokens copies O(T) values rather than O(T^2).
#[derive(Debug)]
pub struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: i64,
}

impl LayerCache {
    fn append(slot: &mut Option<Self>, k: &Tensor, v: &Tensor, reserve: i64) -> (Tensor, Tensor) {
        let t = k.size()[2];
        let cache = match slot.take() {
            Some(mut c) => {
                let cap = c.k.size()[2];
                if c.len + t > cap {
                    let cap = (cap * 2).max(c.len + t);
                    c.k = grow(&c.k, c.len, cap);
                    c.v = grow(&c.v, c.len, cap);
                }
                c.k.narrow(2, c.len, t).copy_(k);
                c.v.narrow(2, c.len, t).copy_(v);
                c.len += t;
                c
            }
            None => {
                let cap = t + reserve.max(0);
                Self {
                    k: grow(k, t, cap),
                    v: grow(v, t, cap),
                    len: t,
                }
            }
        };
        let out = (
            cache.k.narrow(2, 0, cache.len),
            cache.v.narrow(2, 0, cache.len),
        );
        *slot = Some(cache);
        out
    }
}

/// A buffer of `cap` positions holding the first `len` positions of `x` (dim 2).
fn grow(x: &Tensor, len: i64, cap: i64) -> Tensor {
    let mut size = x.size();
    size[2] = cap;
    let buf = Tensor::empty(size.as_slice(), (x.kind(), x.device()));
    buf.narrow(2, 0, len).copy_(&x.narrow(2, 0, len));
    buf
}

/// The cache of every layer.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    reserve: i64,
}

impl KvCache {
    /// An empty cache.
    pub fn new(layers: usize) -> Self {
        Self::with_reserve(layers, 0)
    }
    /// An empty cache whose buffers keep room for `reserve` positions beyond the prompt.
    pub fn with_reserve(layers: usize, reserve: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| None).collect(),
            reserve: reserve as i64,
        }
    }
    /// Cached positions.
    pub fn len(&self) -> i64 {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |c| c.len)
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A cache already holding `layers`' keys and values ((batch, kv_heads, len, head_dim)
    /// each, one pair per layer) with room for `reserve` more positions.
    pub fn filled(layers: Vec<(Tensor, Tensor)>, reserve: usize) -> Self {
        let reserve = reserve as i64;
        Self {
            layers: layers
                .into_iter()
                .map(|(k, v)| {
                    let len = k.size()[2];
                    Some(LayerCache {
                        k: grow(&k, len, len + reserve),
                        v: grow(&v, len, len + reserve),
                        len,
                    })
                })
                .collect(),
            reserve,
        }
    }

    /// Batch row `row`'s keys and values at the cached `positions` (a 1-D index), one pair
    /// per layer, (kv_heads, positions, head_dim) each: copies, not views of the buffers.
    pub fn row(&self, row: i64, positions: &Tensor) -> Vec<(Tensor, Tensor)> {
        self.layers
            .iter()
            .flatten()
            .map(|l| {
                (
                    l.k.get(row).index_select(1, positions),
                    l.v.get(row).index_select(1, positions),
                )
            })
            .collect()
    }

    /// Keep only the batch rows in `index`.
    pub fn select(&mut self, index: &Tensor) {
        for l in self.layers.iter_mut().flatten() {
            l.k = l.k.index_select(0, index);
            l.v = l.v.index_select(0, index);
        }
    }

    /// A cache of only the batch rows in `index` (copies).
    pub fn rows(&self, index: &Tensor) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|l| {
                    l.as_ref().map(|l| LayerCache {
                        k: l.k.index_select(0, index),
                        v: l.v.index_select(0, index),
                        len: l.len,
                    })
                })
                .collect(),
            reserve: self.reserve,
        }
    }

    /// Add `other`'s rows after these, the shorter side left-padded with zeros to the longer
    /// one's positions (the caller's attention mask hides them, as for a left-padded prompt).
    pub fn append_rows(&mut self, other: KvCache) {
        let len = self.len().max(other.len());
        let reserve = self.reserve.max(other.reserve);
        if self.layers.len() != other.layers.len() {
            return;
        }
        for (mine, theirs) in self.layers.iter_mut().zip(other.layers) {
            let Some(theirs) = theirs else { continue };
            let Some(m) = mine.take() else {
                *mine = Some(theirs);
                continue;
            };
            let padded = |x: &Tensor, have: i64| {
                let x = x.narrow(2, 0, have);
                if have == len {
                    return x;
                }
                let mut size = x.size();
                size[2] = len - have;
                Tensor::cat(
                    &[&Tensor::zeros(size.as_slice(), (x.kind(), x.device())), &x],
                    2,
                )
            };
            let k = Tensor::cat(&[padded(&m.k, m.len), padded(&theirs.k, theirs.len)], 0);
            let v = Tensor::cat(&[padded(&m.v, m.len), padded(&theirs.v, theirs.len)], 0);
            *mine = Some(LayerCache {
                k: grow(&k, len, len + reserve),
                v: grow(&v, len, len + reserve),
                len,
            });
        }
        self.reserve = reserve;
    }

    /// Write `other`'s rows into rows `slots` (a 1-D index) of this cache, ending at its last
    /// position, which must be at least `other`'s length. The positions before are left as
    /// they were, for the caller's mask to hide.
    pub fn place(&mut self, slots: &Tensor, other: &KvCache) {
        for (mine, theirs) in self.layers.iter_mut().zip(&other.layers) {
            let (Some(m), Some(t)) = (mine.as_mut(), theirs.as_ref()) else {
                continue;
            };
            let n = t.len.min(m.len);
            let mut k = m.k.narrow(2, m.len - n, n);
            let _ = k.index_copy_(0, slots, &t.k.narrow(2, t.len - n, n));
            let mut v = m.v.narrow(2, m.len - n, n);
            let _ = v.index_copy_(0, slots, &t.v.narrow(2, t.len - n, n));
        }
    }

    /// Left-pad every row with zeros to `len` positions (no change if it holds as many).
    pub fn widen(&mut self, len: i64) {
        let reserve = self.reserve;
        for l in self.layers.iter_mut().flatten() {
            if l.len >= len {
                continue;
            }
            let widened = |x: &Tensor| {
                let mut size = x.size();
                size[2] = len + reserve;
                let buf = Tensor::zeros(size.as_slice(), (x.kind(), x.device()));
                buf.narrow(2, len - l.len, l.len)
                    .copy_(&x.narrow(2, 0, l.len));
                buf
            };
            l.k = widened(&l.k);
            l.v = widened(&l.v);
            l.len = len;
        }
    }

    /// Drop the first `n` positions of every row (positions that no row attends to any more).
    pub fn trim_front(&mut self, n: i64) {
        for l in self.layers.iter_mut().flatten() {
            let n = n.min(l.len);
            let cap = l.k.size()[2];
            l.k = l.k.narrow(2, n, cap - n);
            l.v = l.v.narrow(2, n, cap - n);
            l.len -= n;
        }
    }
}

/// A projection: HF's `nn.Linear`, plus a LoRA update where an adapter targets it.
#[derive(Debug)]
struct Proj {
    base: nn::Linear,
    lora: Option<Lora>,
}

/// A LoRA update `scale · B·A·x` (A: rank × in, B: out × rank), PEFT's `lora_A`/`lora_B`.
#[derive(Debug)]
struct Lora {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
}

impl Proj {
    fn new(vs: nn::Path, inp: i64, out: i64, bias: bool) -> Self {
        Self {
            base: nn::linear(
                vs,
                inp,
                out,
                nn::LinearConfig {
                    bias,
                    ..Default::default()
                },
            ),
            lora: None,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = linear(&self.base, x);
        match &self.lora {
            None => y,
            Some(l) => {
                let kind = x.kind();
                let x = if l.dropout > 0.0 && train {
                    x.dropout(l.dropout, true)
                } else {
                    x.shallow_clone()
                };
                let h = x.matmul(&l.a.to_kind(kind).transpose(0, 1));
                y + h.matmul(&l.b.to_kind(kind).transpose(0, 1)) * l.scale
            }
        }
    }

    fn replica(&self) -> Self {
        Self {
            base: linear_replica(&self.base),
            lora: self.lora.as_ref().map(|l| Lora {
                a: l.a.shallow_clone(),
                b: l.b.shallow_clone(),
                scale: l.scale,
                dropout: l.dropout,
            }),
        }
    }

    /// Fold the update into the weight (W + scale · B·A, computed in float32) and drop it.
    fn merge(&mut self) {
        if let Some(l) = self.lora.take() {
            tch::no_grad(|| {
                let w = &mut self.base.ws;
                let delta = l.b.to_kind(Kind::Float).matmul(&l.a.to_kind(Kind::Float)) * l.scale;
                let merged = (w.to_kind(Kind::Float) + delta).to_kind(w.kind());
                w.copy_(&merged);
            });
        }
    }
}

#[derive(Debug)]
struct Attention {
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    o_proj: Proj,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(vs: nn::Path, cfg: &Config) -> Self {
        let hd = cfg.head_dim();
        let (h, heads, kv) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
        );
        Self {
            q_proj: Proj::new(&vs / "q_proj", h, heads * hd, true),
            k_proj: Proj::new(&vs / "k_proj", h, kv * hd, true),
            v_proj: Proj::new(&vs / "v_proj", h, kv * hd, true),
            o_proj: Proj::new(&vs / "o_proj", heads * hd, h, false),
            heads,
            kv_heads: kv,
            head_dim: hd,
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        mask: Option<&Tensor>,
        causal: bool,
        cache: Option<(&mut Option<LayerCache>, i64)>,
        train: bool,
    ) -> Tensor {
        let (b, t, _) = x.size3().unwrap_or((0, 0, 0));
        let q = self
            .q_proj
            .forward(x, train)
            .view([b, t, self.heads, self.head_dim])
            .transpose(1, 2);
        let k = self
            .k_proj
            .forward(x, train)
            .view([b, t, self.kv_heads, self.head_dim])
            .transpose(1, 2);
        let v = self
            .v_proj
            .forward(x, train)
            .view([b, t, self.kv_heads, self.head_dim])
            .transpose(1, 2);
        let q = Rotary::apply(&q, rope);
        let k = Rotary::apply(&k, rope);
        let (k, v) = match cache {
            Some((slot, reserve)) => LayerCache::append(slot, &k, &v, reserve),
            None => (k, v),
        };
        let groups = self.heads / self.kv_heads;
        let (k, v) = if groups > 1 {
            (
                k.repeat_interleave_self_int(groups, 1, None),
                v.repeat_interleave_self_int(groups, 1, None),
            )
        } else {
            (k, v)
        };
        let y = if t == 1 {
            // One new token over the whole cache (a decode step): two batched products,
            // faster here than the fused kernel's per-head blocks. Padding is hidden by the
            // mask; the new token itself is always real, so no row is all masked.
            let scale = 1.0 / (self.head_dim as f64).sqrt();
            let mut scores = (q * scale).matmul(&k.transpose(2, 3));
            if let Some(keep) = mask {
                scores = scores.masked_fill(&keep.logical_not(), f64::NEG_INFINITY);
            }
            scores.softmax(-1, Kind::Float).to_kind(k.kind()).matmul(&v)
        } else {
            Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, causal, None, false)
        };
        self.o_proj.forward(
            &y.transpose(1, 2)
                .contiguous()
                .view([b, t, self.heads * self.head_dim]),
            train,
        )
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Proj,
    up_proj: Proj,
    down_proj: Proj,
}

impl Mlp {
    fn new(vs: nn::Path, cfg: &Config) -> Self {
        let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
        Self {
            gate_proj: Proj::new(&vs / "gate_proj", h, m, false),
            up_proj: Proj::new(&vs / "up_proj", h, m, false),
            down_proj: Proj::new(&vs / "down_proj", m, h, false),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.down_proj.forward(
            &(self.gate_proj.forward(x, train).silu() * self.up_proj.forward(x, train)),
            train,
        )
    }

    fn projs(&mut self) -> [(&'static str, &mut Proj); 3] {
        [
            ("gate_proj", &mut self.gate_proj),
            ("up_proj", &mut self.up_proj),
            ("down_proj", &mut self.down_proj),
        ]
    }
}

/// `l` applied to `x` in `x`'s kind: under mixed precision the float32 weights are cast on
/// the way in (autograd casts their gradients back).
fn linear(l: &nn::Linear, x: &Tensor) -> Tensor {
    let kind = x.kind();
    if l.ws.kind() == kind {
        return l.forward(x);
    }
    let bias = l.bs.as_ref().map(|b| b.to_kind(kind));
    x.linear(&l.ws.to_kind(kind), bias.as_ref())
}

fn linear_replica(l: &nn::Linear) -> nn::Linear {
    nn::Linear {
        ws: l.ws.shallow_clone(),
        bs: l.bs.as_ref().map(Tensor::shallow_clone),
    }
}

impl Layer {
    fn replica(&self) -> Self {
        let a = &self.self_attn;
        Self {
            self_attn: Attention {
                q_proj: a.q_proj.replica(),
                k_proj: a.k_proj.replica(),
                v_proj: a.v_proj.replica(),
                o_proj: a.o_proj.replica(),
                heads: a.heads,
                kv_heads: a.kv_heads,
                head_dim: a.head_dim,
            },
            mlp: Mlp {
                gate_proj: self.mlp.gate_proj.replica(),
                up_proj: self.mlp.up_proj.replica(),
                down_proj: self.mlp.down_proj.replica(),
            },
            input_layernorm: self.input_layernorm.replica(),
            post_attention_layernorm: self.post_attention_layernorm.replica(),
        }
    }

    /// Every projection with its HF path below the layer (`self_attn.q_proj`).
    fn projs(&mut self) -> Vec<(&'static str, &'static str, &mut Proj)> {
        let a = &mut self.self_attn;
        let mut out: Vec<(&'static str, &'static str, &mut Proj)> = vec![
            ("self_attn", "q_proj", &mut a.q_proj),
            ("self_attn", "k_proj", &mut a.k_proj),
            ("self_attn", "v_proj", &mut a.v_proj),
            ("self_attn", "o_proj", &mut a.o_proj),
        ];
        out.extend(self.mlp.projs().into_iter().map(|(n, p)| ("mlp", n, p)));
        out
    }
}

#[derive(Debug)]
struct Layer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

/// A Qwen2 causal language model.
#[derive(Debug)]
pub struct Qwen2 {
    /// The configuration.
    pub config: Config,
    /// `model.embed_tokens.weight` (vocab, hidden).
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Option<nn::Linear>,
    rotary: Rotary,
    device: tch::Device,
    /// The kind the layers compute in when it differs from the weights' (mixed precision).
    compute: Option<Kind>,
    /// Training: LoRA's dropout acts.
    train: bool,
    /// Activation checkpointing per layer for passes that record gradients.
    checkpointing: bool,
    /// Checkpointed passes waiting for [`Qwen2::backward`].
    recorded: Recorded<LayerContext>,
}

/// What every layer of one forward pass shares: rotary tables, mask, causality.
#[derive(Debug)]
pub struct LayerContext {
    rope: (Tensor, Tensor),
    mask: Option<Tensor>,
    causal: bool,
}

impl Qwen2 {
    /// Build the model's variables under `vs` (the var store's root), with HF's paths.
    pub fn new(vs: &nn::Path, config: Config) -> Self {
        let m = vs / "model";
        let embed_tokens = (&m / "embed_tokens").var(
            "weight",
            &[config.vocab_size, config.hidden_size],
            nn::Init::Randn {
                mean: 0.,
                stdev: 1.,
            },
        );
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = &m / "layers" / i;
                Layer {
                    self_attn: Attention::new(&l / "self_attn", &config),
                    mlp: Mlp::new(&l / "mlp", &config),
                    input_layernorm: RmsNorm::new(
                        &l / "input_layernorm",
                        config.hidden_size,
                        config.rms_norm_eps,
                    ),
                    post_attention_layernorm: RmsNorm::new(
                        &l / "post_attention_layernorm",
                        config.hidden_size,
                        config.rms_norm_eps,
                    ),
                }
            })
            .collect();
        let norm = RmsNorm::new(&m / "norm", config.hidden_size, config.rms_norm_eps);
        let lm_head = (!config.tie_word_embeddings).then(|| {
            nn::linear(
                vs / "lm_head",
                config.hidden_size,
                config.vocab_size,
                nn::LinearConfig {
                    bias: false,
                    ..Default::default()
                },
            )
        });
        let rotary = Rotary::new(&config, vs.device());
        Self {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            device: vs.device(),
            compute: None,
            train: false,
            checkpointing: false,
            recorded: Recorded::default(),
        }
    }

    /// The same model under new handles: every weight is shared (same storage, same
    /// autograd leaf), so a replica can run on another thread while gradients still reach
    /// the original variables.
    pub fn replica(&self) -> Self {
        Self {
            config: self.config.clone(),
            embed_tokens: self.embed_tokens.shallow_clone(),
            layers: self.layers.iter().map(Layer::replica).collect(),
            norm: self.norm.replica(),
            lm_head: self.lm_head.as_ref().map(linear_replica),
            rotary: Rotary {
                cos: self.rotary.cos.shallow_clone(),
                sin: self.rotary.sin.shallow_clone(),
            },
            device: self.device,
            compute: self.compute,
            train: self.train,
            checkpointing: self.checkpointing,
            recorded: Recorded::default(),
        }
    }

    /// Compute in `kind` (bfloat16 over float32 weights: mixed precision), or `None` in the
    /// weights' own kind.
    pub fn set_compute(&mut self, kind: Option<Kind>) {
        self.compute = kind.filter(|k| *k != self.embed_tokens.kind());
    }

    /// Training (LoRA's dropout acts) or not.
    pub fn set_train(&mut self, train: bool) {
        self.train = train;
    }

    /// Activation checkpointing per decoder layer ([`crate::recompute`]) in passes that
    /// record gradients: their loss must then be backpropagated with [`Qwen2::backward`].
    /// LoRA's dropout is not recomputed the same way, so it must be off.
    pub fn set_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
        self.recorded.clear();
    }

    /// Backpropagate `loss` into the variables: a plain backward pass, plus the layers of
    /// every checkpointed forward pass since the last call, recomputed.
    pub fn backward(&self, loss: &Tensor) {
        self.recorded
            .backward(loss, |ctx, i, x| self.layer(ctx, i, x, None));
    }

    /// Add LoRA adapters to the projections `lora` targets, as float32 variables under `vs`
    /// (the var store's root) at PEFT's paths below the module
    /// (`model.layers.0.self_attn.q_proj.lora_A.weight`), every value zero: fill A before
    /// training ([`crate::lora::init_adapters`]) or load an adapter into them.
    pub fn add_lora(&mut self, vs: &nn::Path, lora: &crate::lora::LoraConfig) {
        let device = vs.device();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (block, name, proj) in layer.projs() {
                if !lora.targets.iter().any(|t| t == name) {
                    continue;
                }
                let (out, inp) = proj.base.ws.size2().unwrap_or((0, 0));
                let at = vs / "model" / "layers" / i / block / name;
                let zeros = |shape: [i64; 2]| Tensor::zeros(shape, (Kind::Float, device));
                proj.lora = Some(Lora {
                    a: (&at / "lora_A").add("weight", zeros([lora.rank, inp]), true),
                    b: (&at / "lora_B").add("weight", zeros([out, lora.rank]), true),
                    scale: lora.scale(),
                    dropout: lora.dropout,
                });
            }
        }
    }

    /// Fold every adapter into its projection's weight and drop the adapters: the same
    /// function, as a plain model (the var store keeps the adapters' variables; a saved
    /// checkpoint leaves them out).
    pub fn merge_lora(&mut self) {
        for layer in &mut self.layers {
            for (_, _, proj) in layer.projs() {
                proj.merge();
            }
        }
    }

    /// Where the weights live.
    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// A fresh cache for this model.
    pub fn cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// A fresh cache with room for `reserve` positions beyond the first call's.
    pub fn cache_with_reserve(&self, reserve: usize) -> KvCache {
        KvCache::with_reserve(self.layers.len(), reserve)
    }

    /// Logits (batch, time, vocab) of `ids` (batch, time).
    ///
    /// `attention` (batch, cached + time) is 1 for real tokens and 0 for padding; positions
    /// count real tokens only, so left-padded prompts behave like unpadded ones.
    pub fn forward(&self, ids: &Tensor, attention: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        self.head(&self.hidden(ids, attention, cache))
    }

    /// Like [`Qwen2::forward`], the logits (batch, vocab) of the last position only: what
    /// sampling needs, without projecting every prompt position onto the vocabulary.
    pub fn forward_last(
        &self,
        ids: &Tensor,
        attention: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Tensor {
        self.head(&self.hidden(ids, attention, cache).select(1, -1))
    }

    fn head(&self, x: &Tensor) -> Tensor {
        match &self.lm_head {
            Some(head) => linear(head, x),
            None => x.matmul(&self.embed_tokens.to_kind(x.kind()).transpose(0, 1)),
        }
    }

    /// The final normed hidden states (batch, time, hidden).
    fn hidden(&self, ids: &Tensor, attention: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        let (b, t) = ids.size2().unwrap_or((0, 0));
        let device = ids.device();
        let total = attention.size()[1];
        let past = total - t;
        let padded = i64::try_from(attention.min()).unwrap_or(0) < 1;
        // Padding only on the right of a fresh batch (training) changes nothing for the real
        // tokens under a causal mask: they never see a later position.
        let right_padded = padded
            && past == 0
            && (total < 2
                || bool::try_from(
                    attention
                        .narrow(1, 1, total - 1)
                        .le_tensor(&attention.narrow(1, 0, total - 1))
                        .all(),
                )
                .unwrap_or(false));
        let positions = if padded && !right_padded {
            let positions_all = (attention.cumsum(1, Kind::Int64) - 1).clamp_min(0);
            Some(positions_all.narrow(1, past, t))
        } else {
            // Positions past..total on every row (right padding: the pads' positions do not
            // matter, nothing real attends to them).
            None
        };
        // Without padding, one new token sees everything cached and a fresh prompt is plainly
        // causal: no mask to build. Otherwise combine causality and padding.
        let (mask, causal) = if !padded && t == 1 {
            (None, false)
        } else if (!padded || right_padded) && past == 0 {
            (None, true)
        } else if t == 1 {
            // One new token after a left-padded prompt: only the padding is hidden.
            let keep = attention.to_kind(Kind::Bool).view([b, 1, 1, total]);
            (Some(keep), false)
        } else {
            let q_idx = Tensor::arange_start(past, total, (Kind::Int64, device)).view([t, 1]);
            let k_idx = Tensor::arange(total, (Kind::Int64, device)).view([1, total]);
            let causal = k_idx.le_tensor(&q_idx).view([1, 1, t, total]);
            let keep = attention.to_kind(Kind::Bool).view([b, 1, 1, total]);
            // A fully padded query row (left padding) would give NaN: let it see itself.
            let diag = k_idx.eq_tensor(&q_idx).view([1, 1, t, total]);
            (Some(causal.logical_and(&keep).logical_or(&diag)), false)
        };
        let kind = self.compute.unwrap_or_else(|| self.embed_tokens.kind());
        let rope = match &positions {
            Some(p) => self.rotary.at(p, kind),
            None => self.rotary.span(past, t, kind),
        };
        let x = Tensor::embedding(&self.embed_tokens, ids, -1, false, false).to_kind(kind);
        let ctx = LayerContext { rope, mask, causal };
        let layers = self.layers.len();
        if self.checkpointing && cache.is_none() && crate::recompute::grad_enabled() {
            let (segment, top) =
                Segment::forward(x, layers, ctx, |ctx, i, x| self.layer(ctx, i, x, None));
            self.recorded.push(segment);
            return self.norm.forward(&top);
        }
        let mut x = x;
        let mut cache = cache;
        for i in 0..layers {
            let slot = cache.as_deref_mut().map(|c| (&mut c.layers[i], c.reserve));
            x = self.layer(&ctx, i, &x, slot);
        }
        self.norm.forward(&x)
    }

    /// Decoder layer `i` on `x`.
    fn layer(
        &self,
        ctx: &LayerContext,
        i: usize,
        x: &Tensor,
        slot: Option<(&mut Option<LayerCache>, i64)>,
    ) -> Tensor {
        let layer = &self.layers[i];
        let h = layer.self_attn.forward(
            &layer.input_layernorm.forward(x),
            &ctx.rope,
            ctx.mask.as_ref(),
            ctx.causal,
            slot,
            self.train,
        );
        // Residual adds stay out of place: autograd needs the inputs of every norm.
        let x = x + h;
        let h = layer
            .mlp
            .forward(&layer.post_attention_layernorm.forward(&x), self.train);
        x + h
    }
}
