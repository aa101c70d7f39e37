#!/usr/bin/env bash
# Publish the CPU boards from a run store (reports/published/<board>/: README, leaderboards, site, records),
# then re-render the project README's headline block from the committed records.
#
#   bash scripts/publish-boards.sh [RUNS_DIR] [BOARD ...]     (default: /work/runs-board, both boards)
#
# A board's store may be unfinished: rows show k/n seeds and get no mark until every seed is done.
set -euo pipefail
runs=${1:-/work/runs-board}
shift || true
boards=("$@")
[ ${#boards[@]} -gt 0 ] || boards=(board-scifact-rerank board-scifact-dense)
for board in "${boards[@]}"; do
  bench publish --suite "$board" --runs "$runs" \
    --command "nice -n 19 bench run --suite $board --out $runs   # over several sittings, one worker"
done
python scripts/update-readme-board.py
