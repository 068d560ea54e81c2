"""Padded batches of a causal LM against one-at-a-time encoding, under sdpa and eager attention, bf16 and float32:
what made sliding-window models (Gemma 3) load with eager attention on CUDA. Usage: python3 attention_check.py MODEL_DIR DEVICE"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
P, dev = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(P)
docs = [json.loads(l) for l, _ in zip(open(".device/data/scifact/corpus.jsonl"), range(40))]
long = " ".join(d["text"] for d in docs)[:5000]
texts = [long, docs[0]["title"], docs[1]["text"][:600]]
for dtype in (torch.bfloat16, torch.float32):
    for attn in ("sdpa", "eager"):
        m = AutoModelForCausalLM.from_pretrained(P, dtype=dtype, attn_implementation=attn).to(dev).eval()
        for side in ("right", "left"):
            tok.padding_side = side
            enc = tok(texts, return_tensors="pt", padding=True).to(dev)
            with torch.no_grad():
                h = m.model(**enc).last_hidden_state.float()
                errs = []
                for i, t in enumerate(texts):
                    one = tok([t], return_tensors="pt").to(dev)
                    h1 = m.model(**one).last_hidden_state.float()[0]
                    v = enc["attention_mask"][i].bool()
                    errs.append(round(float((h[i][v] - h1).abs().max()), 3))
            print(dtype, attn, side, "len", enc["input_ids"].shape, "nan rows valid:", int(torch.isnan(h[enc["attention_mask"].bool()]).any(-1).sum()),
                  "max err vs alone:", errs, flush=True)
        del m
