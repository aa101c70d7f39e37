#!/usr/bin/env bash
# The CPU boards' grids one after another, in the background at low priority, each resumed from its board's
# committed records, 2 workers (two one-thread workers train 1.36x faster than one two-thread worker on 2
# cores). Every EXPORT_EVERY seconds (default 900) and at the end of each grid, finished cells are written as
# records into the board folder (scripts/board-progress.py): commit them before a sitting ends.
#
#   nohup bash scripts/board-grids.sh [RUNS_DIR] > grids.log 2>&1 &      (BENCH_DATA_PATH as for any run)
#
# Run it from a worktree of the commit to run (`git worktree add /tmp/wt-grid HEAD`; each cell is a new
# process that imports the tree's code, so edits in the main checkout must not reach it) with
# BENCH_RECORDS_ROOT=<the main checkout>: the records are read from and written to that checkout's boards.
#
# Order: the protocol v2 grids (0.5% and the one-size methods) first, then the LLM reranker board (about 9 h),
# then the budget curves (about 29 h). A grid already complete finishes at once (nothing recomputed).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs-board}
every=${EXPORT_EVERY:-900}
records=${BENCH_RECORDS_ROOT:-$(pwd)}
export BENCH_RECORDS_ROOT=$records
bench=(nice -n 19 python -m bench.cli)

resume() {  # the board's records, the newer progress file first
  local folder=$records/reports/published/$1 flags=()
  for name in progress-v2.jsonl progress.jsonl results.jsonl; do
    [ -f "$folder/$name" ] && flags+=(--resume-from "$folder/$name")
  done
  echo "${flags[@]}"
}

export_progress() {  # $1 board, $2 progress file name
  local tmp
  tmp=$(mktemp -d)
  if python -m bench.cli report --suite "$1" --runs "$runs" --format jsonl --out "$tmp" > /dev/null 2>&1; then
    python scripts/board-progress.py "$1" "$tmp/$1/results.jsonl" "$2"
  fi
  rm -rf "$tmp"
}

run_grid() {  # $1 board, $2 progress file name, the rest: grid flags
  local board=$1 progress=$2
  shift 2
  echo "board-grids: $(date -u +%FT%TZ) $board $* (records: $(resume "$board"))"
  # shellcheck disable=SC2046
  "${bench[@]}" run --suite "$board" "$@" --out "$runs" --workers 2 $(resume "$board") &
  local job=$!
  while kill -0 "$job" 2> /dev/null; do
    sleep "$every" & wait $! 2> /dev/null
    if kill -0 "$job" 2> /dev/null; then
      export_progress "$board" "$progress"
      echo "board-grids: $(date -u +%FT%TZ) $board $(python -m bench.cli status --suite "$board" "$@" --out "$runs" 2> /dev/null | grep '^left:')"
    fi
  done
  wait "$job"
  local status=$?
  export_progress "$board" "$progress"
  echo "board-grids: $(date -u +%FT%TZ) $board finished (exit $status)"
}

run_grid board-scifact-rerank progress-v2.jsonl --budgets 0.5
run_grid board-scifact-dense progress-v2.jsonl --budgets 0.5
run_grid board-scifact-qlm progress.jsonl
run_grid board-scifact-rerank progress-v2.jsonl
run_grid board-scifact-dense progress-v2.jsonl
