#!/usr/bin/python3
"""Megatron-LM SC'21 Table 1 simulated by Strata (driver for run.sh).

For each of the ten rows of table1.json: write a model spec and a strategy spec into specs/,
run `strata simulate` on the bundled Selene-like cluster rescaled to num_gpus/8 nodes, and
collect results/results.csv, results/reports/rowNN.json, results/plot.png and
results/summary.txt. Run it with Debian's /usr/bin/python3 (matplotlib); see README.md.
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
CLUSTER = "configs/clusters/dgx-a100-128n.json"  # relative to REPO
GPUS_PER_NODE = 8

# Peers' accuracy on this table (shared/notes/peers.md): iteration-time error,
# predicted / published - 1, mean and max absolute over the ten rows.
PEERS = [
    ("constant 50% of peak (llm-analysis 0.2.2, efficiency 0.5)", 0.079, 0.131),
    ("Calculon (SC'23), micro-batch 1", 0.076, 0.124),
    ("Calculon, authors' micro-batches and interleaving", 0.103, 0.178),
]
TARGET_MEAN = 0.05  # Strata's target on this table (peers.md)

COLUMNS = [
    "row", "params_billion", "num_gpus", "tp", "pp", "dp", "micro_batch_size", "v", "ddp",
    "published_tflops_per_gpu", "simulated_hardware_tflops_per_gpu", "relative_error",
    "step_time_relative_error", "simulated_step_time_s", "fits", "sim_wall_s",
    "sim_peak_rss_MiB", "error",
]


def dump(obj):
    return json.dumps(obj, indent=2) + "\n"


def model_spec(t, r):
    return {
        "name": "megatron-sc21-gpt-%sb" % fmt_params(r["params_billion"]),
        "family": "gpt",
        "num_hidden_layers": r["num_hidden_layers"],
        "hidden_size": r["hidden_size"],
        "num_attention_heads": r["num_attention_heads"],
        "vocab_size": t["vocab_size"],
        "seq_length": t["seq_length"],
        "source": "Narayanan et al., SC'21 (arXiv:2104.04473), Table 1 row %d (%s B parameters): "
                  "layers, hidden size, attention heads; vocabulary 51200 and sequence 2048 "
                  "from Sec. 5." % (r["row"], fmt_params(r["params_billion"])),
        "notes": "GPT defaults: intermediate_size 4h, gelu, layernorm, learned positions, tied "
                 "embeddings, biases, dropout (Megatron's defaults in 2021).",
    }


def strategy_spec(r):
    tp, pp, n = r["tp"], r["pp"], r["num_gpus"]
    dp = n // (tp * pp)
    assert dp * tp * pp == n
    v = r["interleave_factor_v"]
    torch_ddp = r["ddp"] == "torch"
    s = {
        "name": "megatron-sc21-row%02d-tp%d-pp%d-dp%d" % (r["row"], tp, pp, dp),
        "tp": tp,
        "pp": pp,
        "dp": dp,
        "micro_batch_size": r["micro_batch_size"],
        "global_batch_size": r["global_batch_size"],
        "schedule": "interleaved-1f1b" if v > 1 else "1f1b",
    }
    if v > 1:
        s["virtual_stages"] = v
    s.update({
        "zero_stage": 0,
        "recompute": "full",
        "sequence_parallel": False,
        "precision": "fp16",
        "main_grads_fp32": False,
        "grad_accumulation": "autograd",
        "collectives": {
            "pp_scatter_gather": True,
            "overlap_grad_reduce": torch_ddp,
            "blocking_p2p": True,
        },
        "source": [
            "Narayanan et al., SC'21 (arXiv:2104.04473), Table 1 row %d: tp %d, pp %d, %d GPUs, "
            "global batch %d; mixed precision (fp16), interleaved schedule with the scatter/gather "
            "optimization (Sec. 5.1), full activation recomputation (eq. 3)."
            % (r["row"], tp, pp, n, r["global_batch_size"]),
            "NVIDIA/Megatron-LM examples/sc21/run_table_1.sh (the authors' reproduction script): "
            "micro-batch %d, %s, DDP-impl %s, --recompute-method uniform."
            % (r["micro_batch_size"],
               "layers per virtual stage %d -> virtual_stages %d" % (r["layers_per_virtual_stage"], v)
               if v > 1 else "no virtual stages (plain 1F1B)",
               r["ddp"]),
        ],
        "notes": [
            "dp = %d / (tp %d * pp %d) = %d." % (n, tp, pp, dp),
            "zero_stage 0: no distributed optimizer in 2021.",
            ("ddp torch (PyTorch DDP): bucketed gradient all-reduce overlapping the backward."
             if torch_ddp else
             "ddp local (Megatron's DDP): gradient all-reduce after the backward, not overlapped."),
            "main_grads_fp32 false: the authors' examples/sc21/CONFIG.sh trains with --fp16 "
            "--loss-scale 8192 and without --accumulate-allreduce-grads-in-fp32, so gradients "
            "accumulate and are all-reduced in fp16 (Megatron-LM commit 6985e58, the one the "
            "sc21 README names: megatron/arguments.py, megatron/model/distributed.py).",
            ("grad_accumulation autograd: with PyTorch DDP the weight gradients accumulate in "
             "the parameters' .grad, where autograd's AccumulateGrad adds each micro-batch's "
             "gradient after the first in place."
             if torch_ddp else
             "grad_accumulation autograd: at commit 6985e58 Megatron's local DDP uses contiguous "
             "gradient buffers (and their backward hook) only with --use-contiguous-buffers-in-ddp "
             "or fp32 accumulation, neither set by CONFIG.sh, so gradients accumulate in the "
             "parameters' fp16 .grad through autograd's AccumulateGrad; allreduce_gradients() then "
             "flattens each chunk's gradients into one tensor and all-reduces it once "
             "(collectives.grad_bucket_MiB: one bucket per chunk)."),
            "blocking_p2p: Megatron-LM of 2021, megatron/p2p_communication.py _communicate(): "
            "torch.distributed.batch_isend_irecv, req.wait() on every request, then "
            "torch.cuda.synchronize() ('to protect against race condition when using "
            "batch_isend_irecv()'), so no kernel runs after a send until it completes.",
            ("Rank order, gradient bucket size and stage partition: Strata's defaults "
             "(experiments/megatron-sc21/README.md, 'Settings')." if torch_ddp else
             "Rank order and stage partition: Strata's defaults "
             "(experiments/megatron-sc21/README.md, 'Settings')."),
        ],
    })
    if not torch_ddp:
        # Megatron's local DDP without contiguous buffers flattens every fp16 gradient of a model
        # chunk into one tensor and all-reduces it once: one bucket per chunk (a bound on the
        # largest chunk's fp16 gradients, rounded up to a GiB).
        s["collectives"]["grad_bucket_MiB"] = 1024 * math.ceil(
            r["params_billion"] * 1e9 * 2 / tp / 2**30)
    return s


def fmt_params(p):
    return ("%.1f" % p).rstrip("0").rstrip(".") if p != int(p) else str(int(p))


def eq3_flops(t, r):
    """Megatron SC'21 eq. 3: FLOPs per iteration with activation recomputation."""
    B, s, l, h, V = (r["global_batch_size"], t["seq_length"], r["num_hidden_layers"],
                     r["hidden_size"], t["vocab_size"])
    return 96.0 * B * s * l * h * h * (1 + s / (6.0 * h) + V / (16.0 * l * h))


def run_strata(strata, model_path, strategy_path, nodes, report_path, ignore_memory, timeout):
    cmd = [strata, "simulate", "--model", model_path, "--cluster", CLUSTER,
           "--strategy", strategy_path, "--nodes", str(nodes), "--json", report_path]
    if ignore_memory:
        cmd.append("--ignore-memory")
    # Output to a temporary file and os.wait4 on our own child: wall time and the peak
    # resident memory of this one simulation.
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()  # our own child, by its pid
                pid, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read().decode("utf-8", "replace")
    return {"cmd": cmd, "rc": proc.returncode, "out": out, "wall": wall,
            "timed_out": timed_out, "rss_MiB": usage.ru_maxrss / 1024.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strata", default=os.path.join(REPO, "build/ci/cli/strata"))
    ap.add_argument("--timeout", type=float,
                    default=float(os.environ.get("SC21_TIMEOUT_S", "900")),
                    help="seconds per simulation (default 900, env SC21_TIMEOUT_S)")
    ap.add_argument("--rows", default="", help="comma-separated rows to run (default: all)")
    ap.add_argument("--specs-only", action="store_true", help="write specs/ and stop")
    args = ap.parse_args()
    strata = os.path.abspath(args.strata)

    t = json.load(open(os.path.join(HERE, "table1.json")))
    rows = t["rows"]
    if args.rows:
        keep = {int(x) for x in args.rows.split(",")}
        rows = [r for r in rows if r["row"] in keep]

    spec_dir = os.path.join(HERE, "specs")
    res_dir = os.path.join(HERE, "results")
    rep_dir = os.path.join(res_dir, "reports")
    for d in (spec_dir, res_dir, rep_dir):
        os.makedirs(d, exist_ok=True)

    # 1. Specs (deterministic: same table1.json, same bytes).
    paths = {}
    for r in rows:
        stem = "row%02d-gpt-%sb" % (r["row"], fmt_params(r["params_billion"]))
        mp = os.path.join(spec_dir, stem + ".model.json")
        sp = os.path.join(spec_dir, stem + ".strategy.json")
        with open(mp, "w") as f:
            f.write(dump(model_spec(t, r)))
        with open(sp, "w") as f:
            f.write(dump(strategy_spec(r)))
        paths[r["row"]] = (os.path.relpath(mp, REPO), os.path.relpath(sp, REPO))
    print("wrote %d model and %d strategy specs to %s" % (len(rows), len(rows),
                                                           os.path.relpath(spec_dir, REPO)))
    if args.specs_only:
        return 0
    if not os.access(strata, os.X_OK):
        sys.exit("strata not found at %s (build it: cmake --build --preset ci --target strata)"
                 % strata)

    # 2. Simulations, one at a time.
    results = []
    for r in rows:
        tp, pp, n = r["tp"], r["pp"], r["num_gpus"]
        dp = n // (tp * pp)
        nodes = n // GPUS_PER_NODE
        mp, sp = paths[r["row"]]
        rep = os.path.join(rep_dir, "row%02d.json" % r["row"])
        if os.path.exists(rep):
            os.remove(rep)
        print("row %2d: %7.1f B on %4d GPUs (tp %d, pp %d, dp %d, mbs %d, v %d, ddp %s) ..."
              % (r["row"], r["params_billion"], n, tp, pp, dp, r["micro_batch_size"],
                 r["interleave_factor_v"], r["ddp"]), end=" ", flush=True)
        res = run_strata(strata, mp, sp, nodes, os.path.relpath(rep, REPO), False, args.timeout)
        fits = "yes"
        if res["rc"] != 0 and "does not fit" in res["out"]:
            # Megatron ran it: simulate anyway and flag it.
            fits = "no: " + res["out"].strip().splitlines()[-1]
            res = run_strata(strata, mp, sp, nodes, os.path.relpath(rep, REPO), True,
                             args.timeout)
        row = {
            "row": r["row"], "params_billion": r["params_billion"], "num_gpus": n, "tp": tp,
            "pp": pp, "dp": dp, "micro_batch_size": r["micro_batch_size"],
            "v": r["interleave_factor_v"], "ddp": r["ddp"],
            "published_tflops_per_gpu": r["published_tflops_per_gpu"],
            "simulated_hardware_tflops_per_gpu": "", "relative_error": "",
            "step_time_relative_error": "", "simulated_step_time_s": "", "fits": fits,
            "sim_wall_s": "%.2f" % res["wall"],
            "sim_peak_rss_MiB": "%.0f" % res["rss_MiB"],
            "error": "",
        }
        if res["timed_out"]:
            row["error"] = "timed out after %.0f s" % args.timeout
        elif res["rc"] != 0 or not os.path.exists(rep):
            tail = " | ".join(res["out"].strip().splitlines()[-3:])
            row["error"] = "exit %s: %s" % (res["rc"], tail)
        else:
            rj = json.load(open(rep))
            hw = rj["hardware_tflops_per_gpu"]
            step = rj["step_time_s"]
            pub = r["published_tflops_per_gpu"]
            pub_step = eq3_flops(t, r) / (pub * 1e12 * n)  # derived, the paper prints no times
            row.update({
                "simulated_hardware_tflops_per_gpu": "%.2f" % hw,
                "relative_error": "%+.4f" % (hw / pub - 1),
                "step_time_relative_error": "%+.4f" % (step / pub_step - 1),
                "simulated_step_time_s": "%.4f" % step,
                "_eq3_tflops": eq3_flops(t, r) / (step * n) / 1e12,
                "_report": rj,
            })
            if not rj.get("fits", True) and fits == "yes":
                row["fits"] = "no (report)"
        results.append(row)
        if row["error"]:
            print("FAILED (%s s): %s" % (row["sim_wall_s"], row["error"]))
        else:
            print("%s TFLOP/s (published %d, %s), step %s s, fits %s, %s s wall"
                  % (row["simulated_hardware_tflops_per_gpu"], row["published_tflops_per_gpu"],
                     row["relative_error"], row["simulated_step_time_s"], row["fits"],
                     row["sim_wall_s"]))

    # 3. CSV.
    csv_path = os.path.join(res_dir, "results.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in results:
            w.writerow(row)

    # 4. Summary.
    lines = summary(results)
    text = "\n".join(lines) + "\n"
    print()
    print(text, end="")
    with open(os.path.join(res_dir, "summary.txt"), "w") as f:
        f.write(text)

    # 5. Plot.
    plot(results, os.path.join(res_dir, "plot.png"))
    print("wrote %s, %s, %s"
          % tuple(os.path.relpath(os.path.join(res_dir, x), REPO)
                  for x in ("results.csv", "summary.txt", "plot.png")))
    return 0


def summary(results):
    ok = [r for r in results if not r["error"]]
    lines = ["Megatron SC'21 Table 1: simulated hardware TFLOP/s per GPU vs published", ""]
    lines.append("%4s %8s %5s %4s %4s %4s %4s %2s %6s %9s %9s %8s %9s %9s %9s  %s"
                 % ("row", "params_B", "gpus", "tp", "pp", "dp", "mbs", "v", "ddp", "published",
                    "simulated", "error", "step_err", "step_s", "wall_s", "fits"))
    for r in results:
        if r["error"]:
            lines.append("%4d %8.1f %5d %4d %4d %4d %4d %2d %6s %9d  FAILED: %s"
                         % (r["row"], r["params_billion"], r["num_gpus"], r["tp"], r["pp"],
                            r["dp"], r["micro_batch_size"], r["v"], r["ddp"],
                            r["published_tflops_per_gpu"], r["error"]))
            continue
        lines.append("%4d %8.1f %5d %4d %4d %4d %4d %2d %6s %9d %9s %+7.1f%% %+8.1f%% %9s %9s  %s"
                     % (r["row"], r["params_billion"], r["num_gpus"], r["tp"], r["pp"], r["dp"],
                        r["micro_batch_size"], r["v"], r["ddp"], r["published_tflops_per_gpu"],
                        r["simulated_hardware_tflops_per_gpu"],
                        100 * float(r["relative_error"]), 100 * float(r["step_time_relative_error"]),
                        r["simulated_step_time_s"], r["sim_wall_s"], r["fits"]))
    lines.append("")
    if not ok:
        lines.append("no row simulated")
        return lines
    te = [abs(float(r["relative_error"])) for r in ok]
    se = [abs(float(r["step_time_relative_error"])) for r in ok]
    lines.append("rows simulated: %d of %d" % (len(ok), len(results)))
    lines.append("TFLOP/s error (simulated/published - 1):      mean abs %.1f%%, max abs %.1f%% "
                 "(row %d), mean signed %+.1f%%"
                 % (100 * sum(te) / len(te), 100 * max(te), ok[te.index(max(te))]["row"],
                    100 * sum(float(r["relative_error"]) for r in ok) / len(ok)))
    lines.append("step-time error (simulated/derived - 1):      mean abs %.1f%%, max abs %.1f%% "
                 "(row %d)" % (100 * sum(se) / len(se), 100 * max(se),
                               ok[se.index(max(se))]["row"]))
    lines.append("  (derived published step time = eq. 3 FLOPs / (published TFLOP/s x GPUs); "
                 "the peers' figures below are step-time errors)")
    lines.append("")
    lines.append("peers on the same table (shared/notes/peers.md), step-time error:")
    for name, mean, mx in PEERS:
        lines.append("  %-58s mean abs %4.1f%%, max abs %4.1f%%" % (name, 100 * mean, 100 * mx))
    lines.append("  %-58s mean abs %4.1f%%, max abs %4.1f%%   (target: mean <= %.0f%%)"
                 % ("Strata (this run)", 100 * sum(se) / len(se), 100 * max(se),
                    100 * TARGET_MEAN))
    # Cross-check: the report's hardware TFLOP/s against eq. 3 over the simulated step time.
    dev = [(r["row"], float(r["simulated_hardware_tflops_per_gpu"]) / r["_eq3_tflops"] - 1)
           for r in ok]
    worst = max(dev, key=lambda x: abs(x[1]))
    lines.append("")
    lines.append("check: report hardware_tflops_per_gpu vs eq. 3 / simulated step time: "
                 "largest difference %+.2f%% (row %d)" % (100 * worst[1], worst[0]))
    walls = [float(r["sim_wall_s"]) for r in results]
    lines.append("simulation wall time: total %.1f s, longest %.1f s (row %d)"
                 % (sum(walls), max(walls), results[walls.index(max(walls))]["row"]))
    return lines


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["%sB\n%d GPUs\ntp%d pp%d\nmbs%d v%d"
              % (fmt_params(r["params_billion"]), r["num_gpus"], r["tp"], r["pp"],
                 r["micro_batch_size"], r["v"]) for r in results]
    x = list(range(len(results)))
    pub = [r["published_tflops_per_gpu"] for r in results]
    sim = [float(r["simulated_hardware_tflops_per_gpu"]) if not r["error"] else 0.0
           for r in results]
    w = 0.38
    fig, ax = plt.subplots(figsize=(13, 6.2), dpi=110)
    ax.bar([i - w / 2 for i in x], pub, w, label="published (Megatron-LM on Selene)",
           color="#4c72b0")
    ax.bar([i + w / 2 for i in x], sim, w,
           label="simulated by Strata (hardware TFLOP/s, eq. 3)", color="#dd8452")
    top = max(pub + sim)
    for i, r in enumerate(results):
        if r["error"]:
            ax.text(i + w / 2, 5, "failed", rotation=90, ha="center", va="bottom", fontsize=9)
            continue
        e = 100 * float(r["relative_error"])
        ax.text(i + w / 2, sim[i] + top * 0.01, "%+.1f%%" % e, ha="center", va="bottom",
                fontsize=9, fontweight="bold", color="#b03020" if abs(e) > 10 else "black")
        if not r["fits"].startswith("yes"):
            ax.text(i + w / 2, sim[i] / 2, "no fit", rotation=90, ha="center", va="center",
                    fontsize=8, color="white")
    for i, p in enumerate(pub):
        ax.text(i - w / 2, p + top * 0.01, "%d" % p, ha="center", va="bottom", fontsize=8)
    ax.axhline(312, color="grey", lw=0.8, ls=":")
    ax.text(len(x) - 0.5, 312, "A100 fp16 peak 312", ha="right", va="bottom", fontsize=8,
            color="grey")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("TFLOP/s per GPU (eq. 3, with recompute)")
    ax.set_ylim(0, max(330, top * 1.12))
    ok = [r for r in results if not r["error"]]
    se = [abs(float(r["step_time_relative_error"])) for r in ok]
    te = [abs(float(r["relative_error"])) for r in ok]
    title = "Megatron-LM SC'21 Table 1: published vs simulated throughput"
    if ok:
        title += ("\nTFLOP/s error: mean abs %.1f%%, max abs %.1f%%  |  step-time error: mean abs "
                  "%.1f%%, max abs %.1f%%  (labels: simulated/published - 1)"
                  % (100 * sum(te) / len(te), 100 * max(te), 100 * sum(se) / len(se),
                     100 * max(se)))
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
