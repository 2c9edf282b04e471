#!/usr/bin/python3
"""GPT-2 124M training throughput in PyTorch on one GPU: the other side of bench/gpt2_gpu.sh.

The model strata runs as configs/models/gpt2-124m.json: 12 pre-LayerNorm blocks of hidden 768,
12 heads, a fused q|k|v projection, causal attention (scaled_dot_product_attention: the fused
kernels), GELU with the tanh approximation, ffn 3072, final LayerNorm, the LM head tied to the
word embedding, no dropout. Training as configs/strategies/gpt2-1gpu-bf16.json: bf16 autocast
over fp32 parameters (PyTorch's way of fp32 master weights), AdamW (lr 1e-3, betas 0.9/0.95,
eps 1e-8, no decay; the fused implementation), batch 8 x 1,024 of uniform random tokens.

Prints one JSON line per mode ("eager", and "compile" when torch.compile works here) with the
median tokens/s over the timed steps (after warm-up steps, each timed with the device
synchronised).

Usage: gpt2_gpu_torch.py [--steps 20] [--warmup 5] [--batch 8] [--seq 1024] [--no-compile]
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print(json.dumps({"mode": "eager", "error": "PyTorch is not importable by " + sys.executable}))
    sys.exit(0)


class Block(torch.nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(h)
        self.qkv = torch.nn.Linear(h, 3 * h)
        self.proj = torch.nn.Linear(h, h)
        self.ln2 = torch.nn.LayerNorm(h)
        self.fc1 = torch.nn.Linear(h, 4 * h)
        self.fc2 = torch.nn.Linear(4 * h, h)

    def forward(self, x):
        b, t, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(h, dim=2)
        shape = (b, t, self.heads, h // self.heads)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, h))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class Gpt2(torch.nn.Module):
    def __init__(self, layers=12, h=768, heads=12, vocab=50257, seq=1024):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, h)
        self.wpe = torch.nn.Embedding(seq, h)
        self.blocks = torch.nn.ModuleList(Block(h, heads) for _ in range(layers))
        self.ln_f = torch.nn.LayerNorm(h)
        for p in self.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, tokens, targets):
        t = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(t, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


def measure(mode, args):
    torch.manual_seed(1234)
    model = Gpt2(seq=args.seq).cuda()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.0, fused=True)
    step_fn = model
    if mode == "compile":
        step_fn = torch.compile(model)
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        tokens = torch.randint(0, 50257, (args.batch, args.seq + 1), device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = step_fn(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            losses.append(loss.item())
    tokens_per_step = args.batch * args.seq
    return {"mode": mode, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
            "params": params, "tokens_per_step": tokens_per_step,
            "median_step_s": statistics.median(times),
            "median_tokens_per_s": tokens_per_step / statistics.median(times),
            "last_loss": losses[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"mode": "eager", "error": "no CUDA device visible to PyTorch"}))
        return
    modes = ["eager"] + ([] if args.no_compile else ["compile"])
    for mode in modes:
        try:
            print(json.dumps(measure(mode, args)), flush=True)
        except Exception as e:  # torch.compile needs a compiler toolchain; report, go on
            print(json.dumps({"mode": mode, "error": "%s: %s" % (type(e).__name__, e)}),
                  flush=True)


if __name__ == "__main__":
    main()
