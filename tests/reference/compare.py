#!/usr/bin/python3
"""Runs `strata run` and the PyTorch reference on the same model, batch, seed and data, and
fails unless every step's loss agrees within a relative tolerance (default 1e-4).

Usage (ctest runs it; see tests/reference/CMakeLists.txt):
  compare.py --strata build/ci/cli/strata --model gpt-tiny --strategy tiny-1rank --steps 10
             [--reference-micro-batch-size 1] [--tolerance 1e-4]

Exit status 0 when they agree, 1 when they do not, 2 when something could not run (PyTorch
missing: run scripts/setup.sh).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(proc.stdout)
    return proc.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strata", required=True, help="the strata executable")
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="interpreter for the reference (Debian's, with python3-torch)")
    ap.add_argument("--model", default="gpt-tiny")
    ap.add_argument("--strategy", default="tiny-1rank")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--reference-micro-batch-size", type=int, default=0,
                    help="run the reference with another micro-batch split of the same batch")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="relative, per step")
    args = ap.parse_args()

    probe = subprocess.run([args.python, "-c", "import torch"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    if probe.returncode != 0:
        print("FAIL: PyTorch is not importable by %s (the reference needs Debian's python3-torch)."
              "\nRun scripts/setup.sh to install it.\n%s" % (args.python, probe.stdout.strip()))
        return 2

    with tempfile.TemporaryDirectory(prefix="strata-reference-") as tmp:
        a_json, b_json = os.path.join(tmp, "strata.json"), os.path.join(tmp, "torch.json")
        common = ["--model", args.model, "--strategy", args.strategy,
                  "--steps", str(args.steps), "--seed", str(args.seed)]
        if run([args.strata, "run"] + common + ["--json", a_json]) != 0:
            print("FAIL: strata run exited non-zero")
            return 2
        ref = [args.python, os.path.join(HERE, "gpt_reference.py")] + common + ["--json", b_json]
        if args.reference_micro_batch_size:
            ref += ["--micro-batch-size", str(args.reference_micro_batch_size)]
        if run(ref) != 0:
            print("FAIL: the PyTorch reference exited non-zero")
            return 2
        with open(a_json) as f:
            a = json.load(f)["losses"]
        with open(b_json) as f:
            b = json.load(f)["losses"]

    if len(a) != args.steps or len(b) != args.steps:
        print("FAIL: expected %d losses, strata gave %d, the reference %d"
              % (args.steps, len(a), len(b)))
        return 1
    print("\n%4s  %14s  %14s  %10s" % ("step", "strata", "pytorch", "rel. diff"))
    worst, bad = 0.0, []
    for k, (x, y) in enumerate(zip(a, b), start=1):
        rel = abs(x - y) / max(abs(x), abs(y), 1e-30)
        worst = max(worst, rel)
        if not rel <= args.tolerance:  # also catches NaN
            bad.append(k)
        print("%4d  %14.9f  %14.9f  %10.2e%s" % (k, x, y, rel, "  <-- over" if k in bad else ""))
    print("largest relative difference %.3e (tolerance %.0e)" % (worst, args.tolerance))
    if bad:
        print("FAIL: steps %s differ by more than %g relative" % (bad, args.tolerance))
        return 1
    if not a[-1] < a[0]:
        print("FAIL: the loss did not fall (%g -> %g)" % (a[0], a[-1]))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
