#!/usr/bin/env python3
"""A tour of Strata from Python (docs/python.md): one model, three strategies, their
throughput and memory. GPT-2 124M read from its Hugging Face config.json, on one DGX A100 node
(8 GPUs), as data, tensor and pipeline parallelism; each strategy is first planned (in this
process) and then simulated (in a child process, all three at once). Last, a prediction set
against a measurement: gpt-tiny on one CPU rank, simulated on this machine's spec (local-cpu)
and trained for a few steps by the CPU executor (`strata run`, one rank needs no mpirun).

Usage: python3 examples/python_tour.py [--plot FILE.svg]   (the plot needs matplotlib)
"""
import argparse
import json
import statistics
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import strata

MODEL = "gpt2-hf-config"  # configs/models/: a Hugging Face config.json, read as it is
CLUSTER = "dgx-a100-128n"  # 128 nodes of 8 A100s; gpus=8 uses the first node


def strategy(name, dp, tp=1, pp=1):
    """A strategy spec as a dict (docs/specs.md): 64 sequences of 1,024 tokens per step."""
    return {"name": name, "dp": dp, "tp": tp, "pp": pp, "micro_batch_size": 8,
            "global_batch_size": 64, "precision": "bf16", "attention": "fused"}


STRATEGIES = [strategy("dp8", 8), strategy("tp2-dp4", 4, tp=2), strategy("pp2-dp4", 4, pp=2)]


def predicted_vs_measured(steps):
    """(predicted, measured) seconds per step of gpt-tiny on one CPU rank (tiny-1rank): the
    simulation of local-cpu, and the median step of `strata run` after the first (warm-up)."""
    predicted = strata.simulate("gpt-tiny", "local-cpu", "tiny-1rank", gpus=1)["step_time_s"]
    with tempfile.TemporaryDirectory() as tmp:
        run_json = Path(tmp) / "run.json"
        subprocess.run([strata.executable(), "run", "--model", "gpt-tiny", "--strategy",
                        "tiny-1rank", "--steps", str(steps), "--json", str(run_json)],
                       check=True, capture_output=True)
        measured = statistics.median(s["seconds"] for s in json.loads(run_json.read_text())
                                     ["steps"][1:])
    return predicted, measured


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", help="write a bar chart of throughput and memory (SVG, PNG)")
    args = parser.parse_args()

    for s in STRATEGIES:
        summary = strata.plan(MODEL, CLUSTER, s, gpus=8)
        print(f"{s['name']:8} plan: {summary['tasks']['total']} tasks, "
              f"{summary['flops_per_step']['model'] / 1e12:.1f} TFLOP per step")

    # Each simulation is its own process: threads run them side by side.
    with ThreadPoolExecutor() as pool:
        reports = list(pool.map(lambda s: strata.simulate(MODEL, CLUSTER, s, gpus=8),
                                STRATEGIES))

    print(f"\n{'strategy':8} {'step (ms)':>10} {'tokens/s':>12} {'MFU':>6} {'peak GiB':>9}")
    rows = []
    for s, r in zip(STRATEGIES, reports):
        peak_gib = max(rank["peak_memory_bytes"] for rank in r["ranks"]) / 2**30
        rows.append((s["name"], r["tokens_per_s"], peak_gib))
        print(f"{s['name']:8} {r['step_time_s'] * 1e3:10.2f} {r['tokens_per_s']:12,.0f} "
              f"{r['mfu']:6.1%} {peak_gib:9.2f}")

    steps = 10
    predicted, measured = predicted_vs_measured(steps)
    print(f"\ngpt-tiny on 1 CPU rank: predicted {predicted * 1e3:.2f} ms/step, measured "
          f"{measured * 1e3:.2f} ms/step (strata run, median of steps 2-{steps}), "
          f"measured/predicted {measured / predicted:.2f}")

    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("no matplotlib: no plot")
            return
        names = [n for n, _, _ in rows]
        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
        left.bar(names, [t / 1e6 for _, t, _ in rows])
        left.set_ylabel("million tokens/s")
        right.bar(names, [m for _, _, m in rows], color="tab:orange")
        right.set_ylabel("peak memory per GPU (GiB)")
        fig.suptitle(f"GPT-2 124M on 8 A100s (Strata {strata.version()}, simulated)")
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
