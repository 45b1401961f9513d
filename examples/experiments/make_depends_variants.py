#!/usr/bin/env python3
"""Training-set variants for the depends_count experiment (issue 6): same hold-out, same budget
(30 steps of batch 4), only the training data changes.

  balanced.jsonl  the 48 training examples resampled (seeded) to 120 lines with every
                  depends_count value equally likely (the original is 18/48 "1").
  drills.jsonl    the 48 examples plus 48 counting drills made from their own Depends lines
                  (user: the Depends line; assistant: {"depends_count": N}), shuffled.
  numbered-train.jsonl / numbered-holdout.jsonl
                  train and hold-out with the prompt's Depends entries numbered
                  ("Depends: 1) libc6 (>= 2.34), 2) zlib1g"): a preprocessing step the
                  application controls, which turns counting into copying the last number.
Usage: make_depends_variants.py ../debian-json-train.jsonl ../debian-json-holdout.jsonl OUT_DIR
"""
import json, random, sys, collections, os

src, holdout, out = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(src, encoding="utf-8") if l.strip()]
count = lambda r: json.loads(r["messages"][-1]["content"])["depends_count"]
rng = random.Random(0)
os.makedirs(out, exist_ok=True)

by = collections.defaultdict(list)
for r in rows:
    by[count(r)].append(r)
classes = sorted(by)
with open(os.path.join(out, "balanced.jsonl"), "w", encoding="utf-8") as f:
    for _ in range(120):
        f.write(json.dumps(rng.choice(by[rng.choice(classes)])) + "\n")

drills = []
for r in rows:
    user = r["messages"][1]["content"]
    dep = next((l for l in user.splitlines() if l.startswith("Depends:")), "Depends:")
    drills.append({"messages": [
        {"role": "system", "content": "Reply with only a JSON object with key depends_count (number of entries in Depends, 0 if none)."},
        {"role": "user", "content": dep},
        {"role": "assistant", "content": json.dumps({"depends_count": count(r)})},
    ]})
mixed = rows + drills
rng.shuffle(mixed)
with open(os.path.join(out, "drills.jsonl"), "w", encoding="utf-8") as f:
    for r in mixed:
        f.write(json.dumps(r) + "\n")
print({c: len(v) for c, v in sorted(by.items())})


def split_depends(value):
    """Top-level comma split (commas inside parentheses stay)."""
    items, depth, cur = [], 0, ""
    for ch in value:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur.strip())
    return items


def numbered(row):
    row = json.loads(json.dumps(row))
    lines = row["messages"][1]["content"].split("\n")
    for i, l in enumerate(lines):
        if l.startswith("Depends:"):
            items = split_depends(l[len("Depends:"):])
            lines[i] = "Depends: " + ", ".join(f"{k + 1}) {x}" for k, x in enumerate(items))
    row["messages"][1]["content"] = "\n".join(lines)
    return row


for name, path in [("numbered-train.jsonl", src), ("numbered-holdout.jsonl", holdout)]:
    rs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    bad = [r for r in rs if len(split_depends(next((l for l in r["messages"][1]["content"].split("\n") if l.startswith("Depends:")), "Depends:")[8:])) != count(r)]
    assert not bad, f"{len(bad)} rows where the split disagrees with depends_count"
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        for r in rs:
            f.write(json.dumps(numbered(r)) + "\n")
