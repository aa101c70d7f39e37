"""Re-render the project README's headline block of a published board from its committed records (the
test tests/e2e/test_published_boards.py checks the README equals this rendering):

    python scripts/update-readme-board.py                 # every <!-- headline BOARD: COMMAND --> block
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"(<!-- headline (?P<board>[\w.-]+): (?P<command>[^>]*?) -->\n)(?P<table>.*?)(<!-- end headline -->)", re.S
)


def render(match: re.Match) -> str:
    args = match["command"].split()[1:]  # "bench report ..." -> the arguments after "bench"
    done = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"update-readme-board: {match['command']} failed: {done.stderr.strip().splitlines()[-1:]}")
    return match.group(1) + done.stdout + match.group(5)


readme = ROOT / "README.md"
text = readme.read_text()
updated = BLOCK.sub(render, text)
readme.write_text(updated)
print("README: headline blocks " + ("re-rendered" if updated != text else "already current"))
