"""Checks chat exports the way the trainers read them, and prints a JSON summary.

usage: chat_check.py MESSAGES_JSONL SHAREGPT_JSONL

- sharegpt: the rules of LLaMA-Factory's sharegpt converter (re-implemented here, since
  `pip install llamafactory` pins its own torch and transformers): a leading `system` turn or
  the `system` column is the system prompt; then `human`/`observation` turns at even places
  and `gpt`/`function_call` turns at odd places ("Invalid role tag"), an even number of turns
  ("Invalid message count"); the last turn is the response.
- messages: TRL's own `is_conversational` and `maybe_apply_chat_template` with a tokenizer that
  carries a ChatML chat template.
"""
import json
import sys

from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast
from trl.data_utils import is_conversational, maybe_apply_chat_template

messages_path, sharegpt_path = sys.argv[1:3]

ODD, EVEN = ("human", "observation"), ("gpt", "function_call")
kept, broken = 0, []
for line in open(sharegpt_path):
    ex = json.loads(line)
    turns = ex["conversations"]
    if turns and turns[0]["from"] == "system":
        turns = turns[1:]
    ok = all(t["from"] in (ODD, EVEN)[i % 2] for i, t in enumerate(turns)) and len(turns) % 2 == 0
    ok = ok and len(turns) > 0 and turns[-1]["from"] == "gpt" and isinstance(ex.get("system"), str)
    if ok:
        kept += 1
    else:
        broken.append(ex.get("id"))

tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
tok.chat_template = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
conversational, rendered, mismatched = 0, 0, []
for line in open(messages_path):
    ex = json.loads(line)
    if not is_conversational({"messages": ex["messages"]}):
        continue
    conversational += 1
    out = maybe_apply_chat_template({"messages": ex["messages"]}, tok)
    text = out["text"]
    # Every turn is in the text, in order, and it ends on the assistant's last turn.
    pos = 0
    for m in ex["messages"]:
        i = text.find(m["content"], pos)
        if i < 0:
            mismatched.append(ex.get("id"))
            break
        pos = i + len(m["content"])
    else:
        if text.rstrip().endswith(ex["messages"][-1]["content"] + "<|im_end|>"):
            rendered += 1
        else:
            mismatched.append(ex.get("id"))

print(json.dumps({
    "sharegpt_kept": kept, "sharegpt_broken": broken[:5],
    "messages_conversational": conversational, "messages_rendered": rendered,
    "messages_mismatched": mismatched[:5],
}))
