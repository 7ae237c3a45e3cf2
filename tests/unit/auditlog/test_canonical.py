"""The canonical form (worker/auditlog/canonical.py) is what docs/audit-log.md says: the few lines of
Python given there, run as a separate process on real exports, verify them and find a tampered line."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from tests.unit.auditlog.conftest import note_many
from worker.auditlog import note
from worker.auditlog.canonical import GENESIS, dumps, entry_hash, seal
from worker.auditlog.chain import Head
from worker.auditlog.export import export_log
from worker.ledger.store import Ledger
from worker.storage.local.storage import LocalStorage

DOC = Path(__file__).resolve().parents[3] / "docs" / "audit-log.md"


def documented_verifier(tmp_path: Path) -> Path:
    """The Python block after the verifier marker in docs/audit-log.md, as a script."""
    found = re.search(r"<!-- verifier:[^>]*-->\n```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert found, "docs/audit-log.md lost its verifier block"
    script = tmp_path / "verify_audit_log.py"
    script.write_text(found.group(1))
    return script


def run(script: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), str(directory)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_documented_verifier_checks_real_exports(ledger: Ledger, disk: LocalStorage, tmp_path: Path) -> None:
    note_many(ledger, 3)
    export_log(ledger, disk)
    note(ledger, "erase", call_cid="défaut:ü ☃ 🎥", reason="GDPR art. 17")  # non-ASCII, past U+FFFF too
    note_many(ledger, 2, start=3)
    export_log(ledger, disk, max_entries=2)
    script = documented_verifier(tmp_path)
    result = run(script, disk.root / "audit-log")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"intact: 6 entries, last hash {Head.read(ledger).hash}"

    (last,) = [p for p in (disk.root / "audit-log").rglob("*.jsonl") if p.name.startswith("000000000006")]
    entry = json.loads(last.read_text())
    last.write_text(dumps({**entry, "reason": "changed"}) + "\n")
    result = run(script, disk.root / "audit-log")
    assert result.returncode == 1 and "line 1: altered" in result.stderr


def test_the_hash_covers_every_field_but_itself_in_sorted_compact_ascii_json() -> None:
    entry = seal('{"action":"hold","at":5,"call_cid":"a:ü","reason":"x"}', 1, GENESIS, 0)
    assert list(entry) == ["action", "at", "call_cid", "reason", "seq", "prev", "hash"]
    form = '{"action":"hold","at":5,"call_cid":"a:\\u00fc","prev":"' + GENESIS + '","reason":"x","seq":1}'
    assert entry["hash"] == hashlib.sha256(form.encode("ascii")).hexdigest() == entry_hash(entry)
    assert entry_hash({**entry, "hash": "anything"}) == entry["hash"]
    assert entry_hash({**entry, "seq": 2}) != entry["hash"] and entry_hash({**entry, "prev": "1" * 64}) != entry["hash"]
