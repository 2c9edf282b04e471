#!/usr/bin/env bash
# The GPU checks, prepared to run in one call on a lent GPU machine (docs/gpu-results.md).
#
#   bash scripts/gpu-check.sh build   # here: the gpu preset (no MPI, SimGrid or Qt; no
#                                     # -march=native) builds kernels_tests, kernels_bench,
#                                     # executor_tests (with the NCCL ones) and strata, copied
#                                     # into gpu-bin/ (git ignores it)
#   bash scripts/gpu-check.sh run     # there, with gpu-bin/ carried: the GPU, the CUDA tests
#                                     # (every op against the CPU, determinism, edges; the
#                                     # executor on CUDA against the CPU's losses), the kernel
#                                     # benchmarks, `strata run --device cuda` with its
#                                     # measured trace, and GPT-2 124M against PyTorch
#                                     # (bench/gpt2_gpu.sh); logs into $OUT (default gpu-out/)
#
# The machine there has a driver and a CUDA toolkit but no GoogleTest, hence the binaries built
# here. They load libcublas from the toolkit there: its lib64 is put on LD_LIBRARY_PATH, and
# libnccl.so.2 from the toolkit or, failing that, from PyTorch's NCCL wheel (STRATA_NCCL_LIBRARY).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  build)
    cmake --preset gpu >/dev/null
    cmake --build --preset gpu -j "$(nproc)" --target kernels_tests kernels_bench executor_tests strata
    rm -rf gpu-bin && mkdir -p gpu-bin
    cp build/gpu/tests/kernels/kernels_tests build/gpu/kernels/kernels_bench \
      build/gpu/tests/executor/executor_tests build/gpu/cli/strata gpu-bin/
    ls -la gpu-bin
    ;;
  run)
    out="${OUT:-gpu-out}"
    mkdir -p "$out"
    if [[ ! -x gpu-bin/kernels_tests ]]; then
      echo "gpu-bin/ is missing: run 'bash scripts/gpu-check.sh build' first, carry gpu-bin" >&2
      exit 2
    fi
    cuda_lib=""
    nvcc_dir="$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")"
    for d in "$nvcc_dir/../lib64" /usr/local/cuda/lib64 /usr/local/cuda/lib; do
      if [[ -e "$d/libcublas.so.13" ]]; then cuda_lib="$d"; break; fi
    done
    export LD_LIBRARY_PATH="${cuda_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nccl_lib=""
    if [[ -z "${STRATA_NCCL_LIBRARY:-}" && ! -e "$cuda_lib/libnccl.so.2" ]]; then
      nccl_lib="$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null || true)"
      if [[ -e "$nccl_lib" ]]; then export STRATA_NCCL_LIBRARY="$nccl_lib"; fi
    fi
    {
      date -u
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
      nvcc --version | tail -2 || true
      echo "libcublas from: ${cuda_lib:-not found}"
      echo "libnccl from: ${STRATA_NCCL_LIBRARY:-the loader search path}"
    } > "$out/machine.txt" 2>&1
    status=0
    # There a CUDA test that skips is a failure (no device found where one should be).
    STRATA_REQUIRE_CUDA=1 gpu-bin/kernels_tests \
      --gtest_output="xml:$out/kernels_tests.xml" > "$out/kernels_tests.txt" 2>&1 || status=$?
    # The copied binaries find the specs and the corpus in this checkout, not the build's.
    export STRATA_CONFIG_DIR="$PWD/configs"
    STRATA_REQUIRE_CUDA=1 gpu-bin/executor_tests --gtest_filter='ExecutorCuda*:OpTimer*' \
      --gtest_output="xml:$out/executor_tests.xml" > "$out/executor_tests.txt" 2>&1 || status=$?
    # The NCCL backend: a one-rank world against the local backend, the timeout path.
    STRATA_REQUIRE_CUDA=1 gpu-bin/executor_tests --gtest_filter='NcclComm*:FileStore*' \
      --gtest_output="xml:$out/executor_nccl_tests.xml" > "$out/executor_nccl_tests.txt" 2>&1 ||
      status=$?
    for device in cpu cuda; do
      gpu-bin/strata run --model gpt-tiny --strategy tiny-1rank --steps 20 --device "$device" \
        --json "$out/run-tiny-$device.json" --trace "$out/trace-tiny-$device.json" \
        > "$out/run-tiny-$device.txt" 2>&1 || status=$?
    done
    # bf16 on the GPU, and the one-rank NCCL path of the executor (fp32).
    gpu-bin/strata run --model gpt-tiny --strategy tiny-1rank --steps 20 --device cuda \
      --set strategy.precision=bf16 > "$out/run-tiny-cuda-bf16.txt" 2>&1 || status=$?
    gpu-bin/strata run --model gpt-tiny --strategy tiny-1rank --steps 20 --device cuda \
      --comm nccl > "$out/run-tiny-cuda-nccl.txt" 2>&1 || status=$?
    # GPT-2 124M tokens/s and MFU beside PyTorch eager (and torch.compile) on this GPU.
    STRATA=gpu-bin/strata OUT="$out" timeout 240 bash bench/gpt2_gpu.sh > /dev/null 2>&1 ||
      status=$?
    gpu-bin/kernels_bench --backend all --reps 20 > "$out/kernels_bench.txt" 2>&1 || status=$?
    gpu-bin/kernels_bench --backend cuda --reps 20 --gemm 8192,4096,4096 \
      >> "$out/kernels_bench.txt" 2>&1 || status=$?
    tail -5 "$out/kernels_tests.txt"
    tail -3 "$out/executor_tests.txt"
    tail -3 "$out/executor_nccl_tests.txt"
    paste <(grep -E "^step" "$out/run-tiny-cpu.txt") <(grep -E "^step" "$out/run-tiny-cuda.txt") \
      <(grep -E "^step" "$out/run-tiny-cuda-bf16.txt") || true
    tail -2 "$out/run-tiny-cuda-nccl.txt"
    grep -E "^cuda" "$out/kernels_bench.txt" || true
    cat "$out/gpt2_gpu.txt" 2>/dev/null || true
    exit "$status"
    ;;
  *)
    echo "usage: bash scripts/gpu-check.sh build|run (docs/gpu-results.md)" >&2
    exit 2
    ;;
esac
