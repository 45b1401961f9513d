#!/usr/bin/env python3
"""Hold-out loss of an anytune-written adapter, computed by Hugging Face PEFT.

Loads the HF-layout checkpoint (../shared/reference/gguf_to_safetensors.py writes it), applies the
adapter with `PeftModel.from_pretrained` unchanged, and evaluates with the reference script's own
encoding and loss functions (imported from ../shared/reference/peft/baseline_peft.py), so the number
is directly comparable with `anytune train`'s and `anytune eval`'s hold-out loss.

Needs the reference venv (see ../shared/reference/peft/README.md):
    python scripts/peft_holdout_loss.py --hf-dir DIR --adapter runs/demo/adapter --data examples/debian-json-holdout.jsonl
"""
import argparse, os, sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("ANYTUNE_REFERENCE_PEFT", os.path.join(here, "..", "..", "shared", "reference", "peft")))

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from baseline_peft import encode_example, eval_loss, load_jsonl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf-dir", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--max-len", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(a.hf_dir)
    base = AutoModelForCausalLM.from_pretrained(a.hf_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, a.adapter)
    model.eval()
    enc = [encode_example(tok, r["messages"], a.max_len) for r in load_jsonl(a.data)]
    loss, n = eval_loss(model, enc, tok.convert_tokens_to_ids("<|im_end|>"), 4)
    print(f"PEFT hold-out loss {loss:.6f} over {n} labelled tokens ({a.adapter})")


if __name__ == "__main__":
    main()
