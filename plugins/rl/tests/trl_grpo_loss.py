"""TRL's own GRPO loss on a batch given as JSON (argv[1]): calls GRPOTrainer._compute_loss
of the installed TRL with the batch's per-token log-probabilities as a leaf tensor, and prints
the loss, its gradient with respect to them, and TRL's clip-ratio and KL metrics as JSON."""
import json
import sys
from collections import defaultdict
from types import SimpleNamespace

import torch
import trl
from trl import GRPOTrainer

b = json.load(open(sys.argv[1]))
logp = torch.tensor(b["logp"], dtype=torch.float64, requires_grad=True)
old = torch.tensor(b["old"], dtype=torch.float64)
ref = torch.tensor(b["reference"], dtype=torch.float64)
mask = torch.tensor(b["mask"], dtype=torch.float64)
adv = torch.tensor(b["advantages"], dtype=torch.float64)
rows, tokens = logp.shape

fake = SimpleNamespace(
    _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp)),
    top_entropy_quantile=1.0,
    off_policy_mask_threshold=None,
    importance_sampling_level="token",
    beta=b["kl_coef"],
    args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
    loss_type="bnpo",
    epsilon_low=b["clip_eps"],
    epsilon_high=b["clip_eps"],
    use_vllm=False,
    model=SimpleNamespace(training=True),
    current_gradient_accumulation_steps=1,
    _metrics={"train": defaultdict(list)},
    accelerator=SimpleNamespace(gather=lambda x: x),
)
inputs = {
    "prompt_ids": torch.zeros((rows, 1), dtype=torch.long),
    "prompt_mask": torch.ones((rows, 1), dtype=torch.long),
    "completion_ids": torch.zeros((rows, tokens), dtype=torch.long),
    "completion_mask": mask,
    "advantages": adv,
    "old_per_token_logps": old,
    "ref_per_token_logps": ref,
}
loss = GRPOTrainer._compute_loss(fake, None, inputs)
loss.backward()
m = fake._metrics["train"]
print(json.dumps({
    "trl": trl.__version__,
    "loss": loss.item(),
    "grad": logp.grad.tolist(),
    "clip_ratio": m["clip_ratio/region_mean"][0],
    "kl": m["kl"][0],
}))
