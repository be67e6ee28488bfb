"""Golden data from HF transformers for scorch's Qwen2 tests.

make  DIR VOCAB TIE  -> a tiny random-weight Qwen2 saved in DIR, plus DIR/golden.json with
                        logits of a fixed batch and a greedy continuation.
logits DIR           -> DIR/python_logits.json: logits of the same batch for a checkpoint
                        scorch saved (transformers loads it unchanged).
encode TOKENIZER     -> ids of fixed texts under tokenizer.json, by the Python `tokenizers`.
"""
import json, sys

import torch

IDS = [[5, 17, 3, 99, 42, 7, 7, 60], [11, 2, 33, 4, 90, 15, 8, 1]]
PROMPT = [[9, 23, 4, 51]]


def make(out, vocab, tie):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1234)
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=tie, torch_dtype="float32",
        bos_token_id=0, eos_token_id=1,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    # Non-trivial biases and norms, so that every parameter matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    with torch.no_grad():
        logits = model(torch.tensor(IDS)).logits
        greedy = model.generate(torch.tensor(PROMPT), max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    json.dump({"ids": IDS, "logits": logits.tolist(), "prompt": PROMPT, "greedy": greedy[0, len(PROMPT[0]):].tolist()}, open(f"{out}/golden.json", "w"))


def logits(d):
    from transformers import Qwen2ForCausalLM

    model = Qwen2ForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(torch.tensor(IDS)).logits
    json.dump({"logits": out.tolist()}, open(f"{d}/python_logits.json", "w"))


def encode(path):
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(path)
    texts = json.loads(sys.stdin.read())
    print(json.dumps([tk.encode(t, add_special_tokens=False).ids for t in texts]))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "tie")
    elif cmd == "logits":
        logits(sys.argv[2])
    elif cmd == "encode":
        encode(sys.argv[2])
