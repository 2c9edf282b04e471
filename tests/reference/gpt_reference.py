#!/usr/bin/python3
"""An independent PyTorch (CPU, fp32) reference for Strata's executor.

Trains the same GPT as `strata run` from the same weights and the same data, written from the
documented contract only (executor/params.hpp, executor/data.hpp, executor/executor.hpp,
kernels/model_ops.hpp), not from the executor's code:

  * initialisation: element i of the unsharded tensor NAME is
      key = splitmix64(seed ^ fnv1a64(NAME))
      u1 = unit(splitmix64(key + 2 i)), u2 = unit(splitmix64(key + 2 i + 1))
      z = float32(sqrt(-2 ln u1) cos(2 pi u2))      (in double, then rounded to float)
      value = float32(std * z)
    with unit(b) = ((b >> 11) + 1) 2^-53; std 0.02, 0.02 / sqrt(2 L) for proj.w and fc2.w;
    biases 0, LayerNorm weights 1; a tied LM head is wte itself;
  * data: bytes of the corpus; sample g starts at splitmix64(seed + g) mod (n - T); step k
    (from 0) trains on samples k B .. k B + B - 1 of the global batch B, split into consecutive
    micro-batches of micro_batch_size;
  * model: GPT-2 pre-LayerNorm blocks, fused q|k|v projection, causal softmax attention scaled
    by 1/sqrt(head_dim), GELU (tanh approximation), final LayerNorm, logits = x wte^T, mean
    cross-entropy; the step loss is the mean over the global batch (gradient accumulation adds
    each micro-batch's mean loss divided by the number of micro-batches);
  * AdamW as kernels/model_ops.hpp adamw_step: lr 1e-3, betas (0.9, 0.95), eps 1e-8, no decay.

Usage:
  gpt_reference.py --model gpt-tiny --strategy tiny-1rank --steps 10 --json out.json
  gpt_reference.py --model gpt-10m --strategy bench-10m-1rank --bench --steps 6 --warmup 2

Run with Debian's /usr/bin/python3 and python3-torch (scripts/setup.sh installs it).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

try:
    import torch
except ImportError:
    sys.stderr.write(
        "gpt_reference.py: PyTorch is not importable by %s; run scripts/setup.sh "
        "(it installs Debian's python3-torch)\n" % sys.executable)
    sys.exit(2)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MASK64 = (1 << 64) - 1


# ---- the seeded numbers (pure Python ints masked to 64 bits) ----------------------------------

def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) & MASK64
    return h


def unit(bits):
    # A double in (0, 1] from the top 53 bits; exact in binary floating point.
    return ((bits >> 11) + 1) * 2.0 ** -53


def normal_python(seed, name, count):
    """The first `count` standard normals of tensor `name` as doubles (already rounded to the
    float32 the executor keeps)."""
    key = splitmix64(seed ^ fnv1a64(name))
    out = [0.0] * count
    two_pi = 2.0 * math.pi
    for i in range(count):
        u1 = unit(splitmix64((key + 2 * i) & MASK64))
        u2 = unit(splitmix64((key + 2 * i + 1) & MASK64))
        out[i] = math.sqrt(-2.0 * math.log(u1)) * math.cos(two_pi * u2)
    # Round each to float32 (the C++ init_normal returns float).
    return torch.tensor(out, dtype=torch.float64).to(torch.float32)


def normal_numpy(seed, name, count):
    """The same numbers with numpy's vectorised uint64 arithmetic (wrapping). numpy's log and
    cos may differ from libm in the last bit of a double, which almost never changes the
    float32; --init python is the exact path."""
    import numpy as np
    key = np.uint64(splitmix64(seed ^ fnv1a64(name)))

    def mix(x):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

    with np.errstate(over="ignore"):
        i2 = np.arange(count, dtype=np.uint64) * np.uint64(2)
        b1 = mix(key + i2)
        b2 = mix(key + i2 + np.uint64(1))
    u1 = ((b1 >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53
    u2 = ((b2 >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos((2.0 * math.pi) * u2)
    return torch.from_numpy(z.astype(np.float32))


# ---- specs -----------------------------------------------------------------------------------

def load_spec(arg, folder):
    path = arg if os.path.isfile(arg) else os.path.join(REPO, "configs", folder, arg + ".json")
    if not os.path.isfile(path):
        raise SystemExit("gpt_reference.py: %s '%s': no such file or bundled name" % (folder, arg))
    with open(path) as f:
        return json.load(f), path


def model_config(spec):
    if "model_type" in spec:
        raise SystemExit("gpt_reference.py: Hugging Face config.json files are not supported; "
                         "use Strata's model format (docs/specs.md)")
    cfg = {
        "L": spec["num_hidden_layers"],
        "C": spec["hidden_size"],
        "H": spec["num_attention_heads"],
        "V": spec["vocab_size"],
        "T": spec["seq_length"],
    }
    cfg["F"] = spec.get("intermediate_size") or 4 * cfg["C"]
    cfg["eps"] = float(spec.get("layer_norm_eps") or 1e-5)
    cfg["tied"] = spec.get("tie_word_embeddings", True) in (True, None)
    rules = [
        (spec.get("family") == "gpt", "family must be \"gpt\""),
        (spec.get("num_key_value_heads", cfg["H"]) in (cfg["H"], None),
         "num_key_value_heads must equal num_attention_heads"),
        (spec.get("hidden_act", "gelu") in ("gelu", None), "hidden_act must be gelu"),
        (spec.get("norm", "layernorm") in ("layernorm", None), "norm must be layernorm"),
        (spec.get("position_embeddings", "learned") in ("learned", None),
         "position_embeddings must be learned"),
        (spec.get("bias", True) in (True, None), "bias must be true"),
        (spec.get("dropout") is False, "dropout must be false (the reference has none)"),
        (cfg["V"] == 256, "vocab_size must be 256 (byte-level data)"),
        (cfg["C"] % cfg["H"] == 0, "hidden_size must be divisible by num_attention_heads"),
    ]
    for ok, rule in rules:
        if not ok:
            raise SystemExit("gpt_reference.py: model '%s': %s" % (spec.get("name"), rule))
    return cfg


# ---- parameters ------------------------------------------------------------------------------

def init_params(cfg, seed, method):
    normal = normal_python if method == "python" else normal_numpy
    L, C, F, V, T = cfg["L"], cfg["C"], cfg["F"], cfg["V"], cfg["T"]
    std, out_std = 0.02, 0.02 / math.sqrt(2.0 * L)

    def randn(name, rows, cols, sd):
        z = normal(seed, name, rows * cols).to(torch.float64)
        return (sd * z).to(torch.float32).reshape(rows, cols)

    p = {}
    p["wte"] = randn("wte", V, C, std)
    p["wpe"] = randn("wpe", T, C, std)
    for l in range(L):
        n = "layers.%d." % l
        p[n + "ln1.w"] = torch.ones(C)
        p[n + "ln1.b"] = torch.zeros(C)
        p[n + "qkv.w"] = randn(n + "qkv.w", 3 * C, C, std)
        p[n + "qkv.b"] = torch.zeros(3 * C)
        p[n + "proj.w"] = randn(n + "proj.w", C, C, out_std)
        p[n + "proj.b"] = torch.zeros(C)
        p[n + "ln2.w"] = torch.ones(C)
        p[n + "ln2.b"] = torch.zeros(C)
        p[n + "fc1.w"] = randn(n + "fc1.w", F, C, std)
        p[n + "fc1.b"] = torch.zeros(F)
        p[n + "fc2.w"] = randn(n + "fc2.w", C, F, out_std)
        p[n + "fc2.b"] = torch.zeros(C)
    p["lnf.w"] = torch.ones(C)
    p["lnf.b"] = torch.zeros(C)
    if not cfg["tied"]:
        p["lm_head.w"] = randn("lm_head.w", V, C, std)
    for t in p.values():
        t.requires_grad_(True)
    return p


# ---- the model, in plain tensor ops --------------------------------------------------------

def layer_norm(x, w, b, eps):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased, as in the kernels
    return (x - mean) * torch.rsqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def causal_attention(qkv, H, mask):
    Bm, T, C3 = qkv.shape
    C = C3 // 3
    D = C // H
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    # (B, T, C) -> (B, H, T, D): head h owns columns h D .. h D + D - 1 of each block.
    q = q.reshape(Bm, T, H, D).transpose(1, 2)
    k = k.reshape(Bm, T, H, D).transpose(1, 2)
    v = v.reshape(Bm, T, H, D).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
    scores = scores.masked_fill(mask[:T, :T], float("-inf"))
    att = torch.softmax(scores, dim=-1)
    return (att @ v).transpose(1, 2).reshape(Bm, T, C)


def forward_loss(p, cfg, tokens, targets, mask):
    """Mean cross-entropy of one micro-batch; tokens and targets are (B, T) int64."""
    T = tokens.shape[1]
    x = p["wte"][tokens] + p["wpe"][:T]
    for l in range(cfg["L"]):
        n = "layers.%d." % l
        h = layer_norm(x, p[n + "ln1.w"], p[n + "ln1.b"], cfg["eps"])
        qkv = h @ p[n + "qkv.w"].t() + p[n + "qkv.b"]
        a = causal_attention(qkv, cfg["H"], mask)
        x = x + (a @ p[n + "proj.w"].t() + p[n + "proj.b"])
        h = layer_norm(x, p[n + "ln2.w"], p[n + "ln2.b"], cfg["eps"])
        h = gelu_tanh(h @ p[n + "fc1.w"].t() + p[n + "fc1.b"])
        x = x + (h @ p[n + "fc2.w"].t() + p[n + "fc2.b"])
    x = layer_norm(x, p["lnf.w"], p["lnf.b"], cfg["eps"])
    head = p["wte"] if cfg["tied"] else p["lm_head.w"]
    logits = x @ head.t()  # (B, T, V)
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return nll.mean()


# ---- AdamW, as kernels/model_ops.hpp adamw_step ---------------------------------------------

class AdamW:
    """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; mhat = m / (1 - b1^k);
    vhat = v / (1 - b2^k); p -= lr (mhat / (sqrt(vhat) + eps) + wd p). The betas are float32
    values and the bias corrections are computed in double from them, then rounded to float32,
    the way the kernel does."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0):
        f32 = lambda v: float(torch.tensor(v, dtype=torch.float32))
        self.params = list(params)
        self.lr, self.b1, self.b2 = f32(lr), f32(betas[0]), f32(betas[1])
        self.eps, self.wd = f32(eps), f32(weight_decay)
        self.m = [torch.zeros_like(t) for t in self.params]
        self.v = [torch.zeros_like(t) for t in self.params]
        self.k = 0

    @torch.no_grad()
    def step(self):
        self.k += 1
        bias1 = float(torch.tensor(1.0 - self.b1 ** self.k, dtype=torch.float32))
        bias2 = float(torch.tensor(1.0 - self.b2 ** self.k, dtype=torch.float32))
        for t, m, v in zip(self.params, self.m, self.v):
            g = t.grad
            m.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
            v.mul_(self.b2).add_(g * g, alpha=1.0 - self.b2)
            update = (m / bias1) / (torch.sqrt(v / bias2) + self.eps) + self.wd * t
            t.sub_(self.lr * update)
            t.grad = None


# ---- data ------------------------------------------------------------------------------------

class Corpus:
    def __init__(self, path, T, seed):
        with open(path, "rb") as f:
            self.data = f.read()
        if len(self.data) < T + 1:
            raise SystemExit("gpt_reference.py: corpus '%s' has %d bytes, needs %d"
                             % (path, len(self.data), T + 1))
        self.T, self.seed = T, seed
        self.span = len(self.data) - T

    def batch(self, first, count):
        rows = []
        for g in range(first, first + count):
            o = splitmix64((self.seed + g) & MASK64) % self.span
            rows.append(list(self.data[o:o + self.T + 1]))
        t = torch.tensor(rows, dtype=torch.int64)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()


# ---- training --------------------------------------------------------------------------------

def train(cfg, gb, mbs, steps, seed, data, init, lr, on_step=None):
    if gb % mbs != 0:
        raise SystemExit("gpt_reference.py: global_batch_size %d is not a multiple of "
                         "micro_batch_size %d" % (gb, mbs))
    corpus = Corpus(data, cfg["T"], seed)
    params = init_params(cfg, seed, init)
    opt = AdamW(params.values(), lr=lr)
    mask = torch.triu(torch.ones(cfg["T"], cfg["T"], dtype=torch.bool), diagonal=1)
    n_micro = gb // mbs
    losses = []
    for k in range(steps):
        t0 = time.perf_counter()
        total = 0.0
        for j in range(n_micro):
            tokens, targets = corpus.batch(k * gb + j * mbs, mbs)
            loss = forward_loss(params, cfg, tokens, targets, mask)
            (loss / n_micro).backward()
            total += float(loss)
        opt.step()
        seconds = time.perf_counter() - t0
        losses.append(total / n_micro)
        if on_step:
            on_step(k + 1, losses[-1], seconds)
    return losses, params


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model spec file or bundled name")
    ap.add_argument("--strategy", required=True,
                    help="strategy spec file or bundled name (for the batch: global_batch_size, "
                         "micro_batch_size)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--data", default=os.path.join(REPO, "configs", "data", "tiny-corpus.txt"))
    ap.add_argument("--micro-batch-size", type=int, default=0,
                    help="override the strategy's micro_batch_size (same losses expected)")
    ap.add_argument("--init", choices=["auto", "python", "numpy"], default="auto",
                    help="how to compute the seeded initialisation: python is exact; numpy is "
                         "vectorised (auto: python below 2M parameters)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--json", help="write the losses (and timings) as JSON ('-' for stdout)")
    ap.add_argument("--bench", action="store_true",
                    help="time the steps: print tokens/s per step and the median after "
                         "--warmup steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (--bench)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)  # nothing random is drawn from torch; fixed anyway

    mspec, _ = load_spec(args.model, "models")
    sspec, _ = load_spec(args.strategy, "strategies")
    cfg = model_config(mspec)
    gb = sspec["global_batch_size"]
    mbs = args.micro_batch_size or sspec["micro_batch_size"]
    n_params = (cfg["V"] * cfg["C"] * (1 if cfg["tied"] else 2) + cfg["T"] * cfg["C"] + 2 * cfg["C"]
                + cfg["L"] * (4 * cfg["C"] + 3 * cfg["C"] * cfg["C"] + 3 * cfg["C"]
                              + cfg["C"] * cfg["C"] + cfg["C"] + 2 * cfg["C"] * cfg["F"]
                              + cfg["F"] + cfg["C"]))
    init = args.init
    if init == "auto":
        init = "python" if n_params < 2_000_000 else "numpy"

    tokens_per_step = gb * cfg["T"]
    steps = args.steps + (args.warmup if args.bench else 0)
    records = []

    def on_step(k, loss, seconds):
        records.append({"step": k, "loss": loss, "seconds": seconds,
                        "tokens_per_s": tokens_per_step / seconds})
        print("step %4d  loss %.6f  time %8.4f s  tokens/s %10.0f"
              % (k, loss, seconds, tokens_per_step / seconds), flush=True)

    print("gpt_reference.py: %s (%d parameters), global batch %d x %d tokens, micro-batch %d, "
          "torch %s, %d thread(s), init %s"
          % (mspec.get("name"), n_params, gb, cfg["T"], mbs, torch.__version__,
             torch.get_num_threads(), init), flush=True)
    losses, _ = train(cfg, gb, mbs, steps, args.seed, args.data, init, args.lr, on_step)
    timed = records[args.warmup:] if args.bench else records
    median = statistics.median(r["tokens_per_s"] for r in timed) if timed else 0.0
    print("median tokens/s %.0f over %d steps" % (median, len(timed)))
    if args.json:
        out = {"kind": "strata.pytorch_reference", "model": mspec.get("name"),
               "strategy": sspec.get("name"), "seed": args.seed, "threads": args.threads,
               "torch_version": torch.__version__, "init": init, "parameters": n_params,
               "global_batch_size": gb, "micro_batch_size": mbs, "seq_length": cfg["T"],
               "losses": losses, "steps": records, "warmup_steps": args.warmup if args.bench else 0,
               "median_tokens_per_s": median}
        text = json.dumps(out, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            with open(args.json, "w") as f:
                f.write(text)


if __name__ == "__main__":
    main()
