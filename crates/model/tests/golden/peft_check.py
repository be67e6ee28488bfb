"""PEFT's side of scorch's LoRA tests (tests/lora_peft.rs).

logits BASE [ADAPTER] -> BASE/peft_logits.json: logits of a fixed batch from transformers'
                         Qwen2 at BASE, with PEFT's PeftModel loading ADAPTER onto it.
make BASE OUT          -> a PEFT adapter for BASE in OUT (PEFT's own initialisation, with B
                         random so that it changes the output, rsLoRA scaling), and
                         OUT/peft_logits.json with its logits.
"""
import json, sys

import torch

IDS = [[5, 17, 3, 99, 42, 7, 7, 60], [11, 2, 33, 4, 90, 15, 8, 1]]


def model(base, adapter=None):
    from transformers import Qwen2ForCausalLM

    m = Qwen2ForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        m = PeftModel.from_pretrained(m, adapter)
    return m.eval()


def logits(m, out):
    with torch.no_grad():
        y = m(torch.tensor(IDS)).logits
    json.dump({"logits": y.tolist()}, open(out, "w"))


def make(base, out):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(99)
    cfg = LoraConfig(r=4, lora_alpha=6, target_modules=["k_proj", "o_proj", "up_proj"],
                     use_rslora=True, init_lora_weights=False, task_type="CAUSAL_LM")
    m = get_peft_model(model(base), cfg).eval()
    m.save_pretrained(out)
    logits(m, f"{out}/peft_logits.json")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "logits":
        adapter = sys.argv[3] if len(sys.argv) > 3 else None
        logits(model(sys.argv[2], adapter), f"{adapter or sys.argv[2]}/peft_logits.json")
    elif cmd == "make":
        make(sys.argv[2], sys.argv[3])
