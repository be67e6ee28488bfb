"""Baselines for benches/model.rs on the same checkpoint: HF transformers `generate`
(KV cache, batch 32), a plain PyTorch SFT loop in float32, and the same loop under CPU
autocast (bfloat16). Prints one JSON line."""
import json, sys, time

import torch
from transformers import Qwen2ForCausalLM

d, batch, prompt_len, new_tokens, train_steps, seq_len, reps, bf16_steps, bf16_reps = sys.argv[1], *map(int, sys.argv[2:10])
torch.manual_seed(0)
model = Qwen2ForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
vocab = model.config.vocab_size
ids = torch.randint(3, vocab, (batch, prompt_len))
mask = torch.ones_like(ids)
with torch.no_grad():
    model.generate(ids[:2, :8], attention_mask=mask[:2, :8], max_new_tokens=4, do_sample=False, pad_token_id=0)
    gen = []
    for _ in range(reps):
        t = time.perf_counter()
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None)
        gen.append(batch * new_tokens / (time.perf_counter() - t))
        assert out.shape[1] == prompt_len + new_tokens
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
x = torch.randint(3, vocab, (batch, seq_len))
loss_mask = torch.ones(batch, seq_len - 1)
def step(bf16=False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(x).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)
    loss = -(logp * loss_mask).sum() / loss_mask.sum()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
step()
train = []
for _ in range(reps):
    t = time.perf_counter()
    for _ in range(train_steps):
        step()
    train.append(train_steps * batch * seq_len / (time.perf_counter() - t))
step(bf16=True)
bf16 = []
for _ in range(bf16_reps):
    t = time.perf_counter()
    for _ in range(bf16_steps):
        step(bf16=True)
    bf16.append(bf16_steps * batch * seq_len / (time.perf_counter() - t))
median = lambda xs: sorted(xs)[len(xs) // 2]
print(json.dumps({"gen_tokens_per_s": median(gen), "train_tokens_per_s": median(train), "bf16_train_tokens_per_s": median(bf16), "threads": torch.get_num_threads()}))
