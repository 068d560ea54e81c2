"""Padded batches of a causal LM against one-at-a-time encoding, under sdpa and eager attention, bf16 and float32,
each one-at-a-time encoding against CPU float32, and the next tokens after a short prompt (with the token count of
the batch, this caught Gemma 3's tokenizer splitting text into characters on the device, 2026-12-07).
Usage: python3 attention_check.py MODEL_DIR DEVICE"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
P, dev = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(P)
docs = [json.loads(l) for l, _ in zip(open(".device/data/scifact/corpus.jsonl"), range(40))]
long = " ".join(d["text"] for d in docs)[:5000]
texts = [long, docs[0]["title"], docs[1]["text"][:600]]
prompt = "The capital of France is"


def hidden(m, text: str, device: str) -> torch.Tensor:
    one = tok([text], return_tensors="pt").to(device)
    return m.model(**one).last_hidden_state.float()[0].cpu()


with torch.no_grad():
    ref_model = AutoModelForCausalLM.from_pretrained(P, dtype=torch.float32, attn_implementation="eager").eval()
    ref = [hidden(ref_model, t, "cpu") for t in texts]
    del ref_model
for dtype in (torch.bfloat16, torch.float32):
    for attn in ("sdpa", "eager"):
        m = AutoModelForCausalLM.from_pretrained(P, dtype=dtype, attn_implementation=attn).to(dev).eval()
        with torch.no_grad():
            alone = [hidden(m, t, dev) for t in texts]
            rel = [round(float((a - r).norm() / r.norm()), 4) for a, r in zip(alone, ref)]
            logits = m(**tok([prompt], return_tensors="pt").to(dev)).logits[0, -1].float()
            top = tok.convert_ids_to_tokens(logits.topk(5).indices.tolist())
            print(dtype, attn, "alone vs CPU float32 (relative L2):", rel, "next after", repr(prompt), top, flush=True)
            for side in ("right", "left"):
                tok.padding_side = side
                enc = tok(texts, return_tensors="pt", padding=True).to(dev)
                h = m.model(**enc).last_hidden_state.float().cpu()
                mask = enc["attention_mask"].bool().cpu()
                errs = [round(float((h[i][mask[i]] - alone[i]).abs().max()), 3) for i in range(len(texts))]
                print(" ", side, "len", tuple(enc["input_ids"].shape), "nan rows valid:",
                      int(torch.isnan(h[mask]).any(-1).sum()), "max err padded vs alone:", errs, flush=True)
        del m
