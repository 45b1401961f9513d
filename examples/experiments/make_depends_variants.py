#!/usr/bin/env python3
"""Training-set variants for the depends_count experiment (issue 6): same hold-out, same budget
(30 steps of batch 4), only the training data changes.

  balanced.jsonl  the 48 training examples resampled (seeded) to 120 lines with every
                  depends_count value equally likely (the original is 18/48 "1").
  drills.jsonl    the 48 examples plus 48 counting drills made from their own Depends lines
                  (user: the Depends line; assistant: {"depends_count": N}), shuffled.
Usage: make_depends_variants.py ../debian-json-train.jsonl OUT_DIR
"""
import json, random, sys, collections, os

src, out = sys.argv[1], sys.argv[2]
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
