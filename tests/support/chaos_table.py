"""Print the chaos report as a table and write it to a Markdown file (used by scripts/chaos)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

COLUMNS = ("fault", "sent", "archived", "lost", "duplicates", "recover_seconds")


def main(report: Path, markdown: Path) -> int:
    rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    table = Table(*COLUMNS, title="archiver chaos run")
    for row in rows:
        table.add_row(*(str(row[c]) for c in COLUMNS))
    Console().print(table)
    lines = [f"# Chaos run ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `scripts/chaos`)", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text("\n".join(lines) + "\n")
    bad = [row["fault"] for row in rows if row["lost"] or row["duplicates"]]
    if bad:
        print(f"LOST OR DUPLICATED: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
