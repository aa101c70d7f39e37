#!/usr/bin/env bash
# Publish the CPU boards from a run store (reports/published/<board>/: README, leaderboards, site, records),
# then re-render the project README's headline block from the committed records.
#
#   [BUDGETS=0.5] bash scripts/publish-boards.sh [RUNS_DIR] [BOARD ...]   (default: /work/runs-board, both boards)
#
# BUDGETS: publish the grid at these budgets only (`--budgets`, e.g. protocol v2 at 0.5% before the curves);
# unset: the suite's whole grid. A board's store may be unfinished: rows show k/n seeds and get no mark until
# every seed is done. A board folder's changes.md (what this publication changes, by hand) goes under its
# description; `python scripts/board-changes.py OLD NEW` prints the table of what moved.
set -euo pipefail
runs=${1:-/work/runs-board}
shift || true
boards=("$@")
[ ${#boards[@]} -gt 0 ] || boards=(board-scifact-rerank board-scifact-dense)
flags=()
[ -n "${BUDGETS:-}" ] && flags=(--budgets "$BUDGETS")
for board in "${boards[@]}"; do
  bench publish --suite "$board" "${flags[@]}" --runs "$runs" \
    --command "nohup bash scripts/board-grids.sh $runs > grids.log 2>&1 &   # over several sittings, 2 workers, at nice 19: bench run --suite $board ${flags[*]} --workers 2 --resume-from <the board's records>"
done
python scripts/update-readme-board.py
