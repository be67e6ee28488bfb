"""PyTorch baselines for `scorch bench` on the same model and shapes (scripts/gpu-check).

  python3 scripts/gpu_baseline.py train    --batch 4 --seq 2048 --steps 10 --warmup 3
  python3 scripts/gpu_baseline.py generate --batch 64 --prompt 128 --new-tokens 128

`train`: a plain PyTorch eager loop over a Qwen2 written here (the same architecture and
initialisation as scorch's), float32 master weights under `torch.autocast` (bfloat16), AdamW
with scorch's betas and clipping, cross-entropy over every token. `generate`: HF `generate`
(greedy, KV cache) on a randomly initialised `Qwen2ForCausalLM` in bfloat16 when `transformers`
is installed; otherwise the eager model here with a KV cache (reported as such). One JSON line
per run.
"""
import argparse, json, math, time

import torch
import torch.nn.functional as F

QWEN2_05B = dict(vocab=151936, hidden=896, inter=4864, layers=24, heads=14, kv=2, theta=1e6, eps=1e-6)
EMBEDDED = dict(vocab=2000, hidden=192, inter=512, layers=4, heads=6, kv=6, theta=1e4, eps=1e-6)


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        h, hd = c["hidden"], c["hidden"] // c["heads"]
        self.heads, self.kv, self.hd = c["heads"], c["kv"], hd
        self.q = torch.nn.Linear(h, c["heads"] * hd)
        self.k = torch.nn.Linear(h, c["kv"] * hd)
        self.v = torch.nn.Linear(h, c["kv"] * hd)
        self.o = torch.nn.Linear(c["heads"] * hd, h, bias=False)
        self.gate = torch.nn.Linear(h, c["inter"], bias=False)
        self.up = torch.nn.Linear(h, c["inter"], bias=False)
        self.down = torch.nn.Linear(c["inter"], h, bias=False)
        self.n1 = torch.nn.RMSNorm(h, eps=c["eps"])
        self.n2 = torch.nn.RMSNorm(h, eps=c["eps"])

    def forward(self, x, cos, sin, cache=None):
        b, t, _ = x.shape
        y = self.n1(x)
        q = self.q(y).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k(y).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(y).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        causal = cache is None or t > 1
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        y = self.n2(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class Qwen2(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = torch.nn.Embedding(c["vocab"], c["hidden"])
        self.layers = torch.nn.ModuleList(Layer(c) for _ in range(c["layers"]))
        self.norm = torch.nn.RMSNorm(c["hidden"], eps=c["eps"])
        for name, p in self.named_parameters():
            if "n1" in name or "n2" in name or name.startswith("norm"):
                torch.nn.init.ones_(p)
            elif name.endswith("bias"):
                torch.nn.init.zeros_(p)
            else:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def tables(self, start, t, device, dtype):
        hd = self.c["hidden"] // self.c["heads"]
        inv = 1.0 / self.c["theta"] ** (torch.arange(0, hd, 2, device=device).float() / hd)
        pos = torch.arange(start, start + t, device=device).float()
        f = torch.outer(pos, inv)
        e = torch.cat([f, f], -1)
        return e.cos().to(dtype), e.sin().to(dtype)

    def forward(self, ids, caches=None, start=0):
        x = self.embed(ids)
        dtype = torch.get_autocast_dtype(ids.device.type) if torch.is_autocast_enabled(ids.device.type) else x.dtype
        cos, sin = self.tables(start, ids.shape[1], ids.device, dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i])
        return self.norm(x) @ self.embed.weight.t()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train(a, c, device):
    torch.manual_seed(0)
    model = Qwen2(c).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
    x = torch.randint(3, c["vocab"], (a.batch, a.seq), device=device)
    bf16 = a.precision == "bf16"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)[:, :-1]
        loss = F.cross_entropy(logits.float().reshape(-1, c["vocab"]), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(a.warmup):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync(device)
    secs = time.perf_counter() - t
    tokens_per_s = a.batch * a.seq * a.steps / secs
    matmul = c["layers"] * (c["hidden"] * (c["hidden"] // c["heads"]) * (2 * c["heads"] + 2 * c["kv"])
                            + 3 * c["hidden"] * c["inter"]) + c["vocab"] * c["hidden"]
    flops = 6 * matmul + 12 * c["layers"] * c["hidden"] * a.seq
    out = dict(bench="train", side="pytorch eager", tokens_per_s=tokens_per_s, flops_per_s=tokens_per_s * flops,
               loss=float(loss.detach()), precision=a.precision)
    if a.peak_tflops:
        out["mfu"] = tokens_per_s * flops / (a.peak_tflops * 1e12)
    return out


def generate(a, c, device):
    torch.manual_seed(0)
    ids = torch.randint(3, c["vocab"], (a.batch, a.prompt), device=device)
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    try:
        from transformers import Qwen2Config, Qwen2ForCausalLM
        cfg = Qwen2Config(vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["inter"],
                          num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                          num_key_value_heads=c["kv"], rope_theta=c["theta"], rms_norm_eps=c["eps"],
                          tie_word_embeddings=True, max_position_embeddings=32768)
        model = Qwen2ForCausalLM(cfg).to(device=device, dtype=dtype).eval()
        side = "HF generate"

        def run():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new_tokens,
                                 min_new_tokens=a.new_tokens, do_sample=False, pad_token_id=0,
                                 eos_token_id=None)
            assert out.shape[1] == a.prompt + a.new_tokens
    except ImportError:
        model = Qwen2(c).to(device=device, dtype=dtype).eval()
        side = "PyTorch eager loop (transformers not installed)"

        def run():
            caches = [[] for _ in range(c["layers"])]
            logits = model(ids, caches, 0)
            tok = logits[:, -1].argmax(-1, keepdim=True)
            for i in range(1, a.new_tokens):
                logits = model(tok, caches, a.prompt + i - 1)
                tok = logits[:, -1].argmax(-1, keepdim=True)

    with torch.no_grad():
        run()
        times = []
        for _ in range(a.runs):
            sync(device)
            t = time.perf_counter()
            run()
            sync(device)
            times.append(time.perf_counter() - t)
    secs = sorted(times)[len(times) // 2]
    return dict(bench="generate", side=side, tokens_per_s=a.batch * a.new_tokens / secs, run_s=secs,
                precision=a.precision)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bench", choices=["train", "generate"])
    p.add_argument("--model", default="qwen2-0.5b", choices=["qwen2-0.5b", "embedded"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--peak-tflops", type=float)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    c = QWEN2_05B if a.model == "qwen2-0.5b" else EMBEDDED
    device = torch.device(a.device)
    out = train(a, c, device) if a.bench == "train" else generate(a, c, device)
    out.update(model=a.model, device=str(device), batch=a.batch, torch=torch.__version__)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
