#!/usr/bin/env bash
# The published boards (rerank, dense, the LLM reranker) on one GPU under their `cuda` profile, published as
# reports/published/<board>-gpu/ (README, leaderboards, site, records). Sized for one H100/H200 within
# one 10-minute command: the cells run WORKERS at a time on the card (each worker its share of its memory).
#
#   bash scripts/gpu-boards.sh [RUNS_DIR]        (env: WORKERS, default 8; BUDGETS; BENCH_DATA_PATH as for any run)
#
# The store resumes: run it again after an interruption and only the missing cells run. CI never needs it.
set -euo pipefail
runs=${1:-runs-gpu}
workers=${WORKERS:-8}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-boards: no NVIDIA GPU here (nvidia-smi finds none): run the CPU boards instead (reports/published/*/README.md)" >&2
  exit 2
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
start=$(date +%s)
# BUDGETS: the encoder boards' budgets (default 0.5, the size a 10-minute command was planned for; "all":
# the suites' budget curves, 0.1 to 6.7, several times the cells and not timed on a GPU yet)
budgets=${BUDGETS:-0.5}
grid_flags() { if [ "$1" != board-scifact-qlm ] && [ "$budgets" != all ]; then echo "--budgets $budgets"; fi; }
for board in board-scifact-rerank board-scifact-dense board-scifact-qlm; do
  # shellcheck disable=SC2046
  bench run --suite "$board" $(grid_flags "$board") --device cuda --out "$runs" --workers "$workers" > "$runs-$board.log" 2>&1 &
done
status=0
for job in $(jobs -p); do wait "$job" || status=$?; done
elapsed=$(( $(date +%s) - start ))
for board in board-scifact-rerank board-scifact-dense board-scifact-qlm; do
  # shellcheck disable=SC2046
  bench publish --suite "$board" $(grid_flags "$board") --device cuda --runs "$runs" --as "$board-gpu" \
    --command "bash scripts/gpu-boards.sh $runs   # WORKERS=$workers, the boards at once on one $gpu, ${elapsed} s" \
    || status=$?
done
echo "gpu-boards: the boards in ${elapsed} s on $gpu; published reports/published/board-scifact-*-gpu (exit $status)"
exit $status
