"""PyTorch + PEFT beside `scorch bench train --lora` on the same shapes (scripts/gpu-check).

  python3 scripts/gpu_peft_baseline.py --model qwen2.5-7b --batch 1 --seq 2048 --rank 16 [--rl 256]

A randomly initialised HF `Qwen2ForCausalLM` of the named config with a bf16 base, PEFT LoRA
adapters of rank `--rank` (alpha twice the rank) on all seven projections in float32, HF's
gradient checkpointing, AdamW on the adapters, cross-entropy over every token. With `--rl N`
each step first samples N tokens per sequence (HF `generate`, temperature 1) from the first
`seq - N` tokens, then takes a policy-gradient step on the sampled tokens, as scorch's RL
bench does. One JSON line: tokens/s, seconds per step, the allocator's peak
(`torch.cuda.max_memory_allocated`) and the trained parameters.
"""
import argparse, json, time

import torch

CONFIGS = {
    "qwen2-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    "qwen2.5-7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="qwen2-0.5b", choices=sorted(CONFIGS))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rl", type=int, default=0)
    p.add_argument("--device", default="cuda", help="cuda (what gpu-check runs), or cpu to try the script")
    a = p.parse_args()
    dev = torch.device(a.device)
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(max_position_embeddings=32768, rope_theta=1e6, **CONFIGS[a.model])
    with dev:
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules=TARGETS))
    for n, t in model.named_parameters():
        if t.requires_grad:
            t.data = t.data.float()
    trained = sum(t.numel() for t in model.parameters() if t.requires_grad)
    opt = torch.optim.AdamW([t for t in model.parameters() if t.requires_grad], lr=1e-4,
                            betas=(0.9, 0.98), weight_decay=0.01)
    ids = torch.randint(3, config.vocab_size, (a.batch, a.seq), device=dev)

    def step():
        x, mask = ids, torch.ones_like(ids, dtype=torch.float)
        if a.rl:
            prompt = ids[:, : a.seq - a.rl]
            with torch.no_grad():
                model.eval()
                x = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                   max_new_tokens=a.rl, min_new_tokens=a.rl, do_sample=True,
                                   temperature=1.0, top_p=1.0, pad_token_id=0)
                model.train()
            mask = torch.zeros_like(x, dtype=torch.float)
            mask[:, prompt.shape[1]:] = 1.0
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            logits = model(input_ids=x).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None]).squeeze(-1)
        m = mask[:, 1:]
        if a.rl:
            adv = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(x.shape[0])], device=dev)[:, None]
            loss = -(torch.exp(logp - logp.detach()) * adv * m).sum() / m.sum()
        else:
            loss = -(logp * m).sum() / m.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([t for t in model.parameters() if t.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    cuda = dev.type == "cuda"
    for _ in range(a.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    out = dict(side="pytorch+peft", model=a.model, batch=a.batch, seq=a.seq, rank=a.rank, rl=a.rl,
               tokens_per_s=a.batch * a.seq * a.steps / sum(times), step_s=times[len(times) // 2],
               peak_bytes=torch.cuda.max_memory_allocated() if cuda else None,
               trained_params=trained, loss=loss, device=str(dev),
               torch=torch.__version__)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
