"""`archiver audit`'s own parts (worker/edge/cli/audit.py): its arguments and its table."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import typer

from tests.fakestream.server import FakeStream
from tests.unit.audit.conftest import archive, run, seed
from worker.edge.cli.audit import _query, _render
from worker.runtime import Runtime


@pytest.mark.parametrize("args", [("last tuesday", None, ()), ("2d", "3d", ()), ("14d", None, ("no-colon",)),
                                  ("2999-01-01", None, ())])
def test_bad_arguments_exit_2(args: tuple[str, str | None, tuple[str, ...]]) -> None:
    since, until, calls = args
    with pytest.raises(typer.Exit) as stopped:
        _query(since, until, calls, False)
    assert stopped.value.exit_code == 2


def test_the_table_gives_the_counts_first_then_every_problem_as_written(
        make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime("a", call_storage_key="")
    (kept, unseen) = seed(fake, calls=1, files=2)
    archive(runtime, fake, kept)
    out = io.StringIO()
    _render(run(runtime), "table", out)
    text = out.getvalue()
    assert text.index("summary") < text.index("ok ") < text.index("problems (1)")
    assert "unknown_to_ledger" in text and unseen.filename in text and "recorded now and queued" in text
    assert kept.filename not in text  # an ok file is counted, not listed


def test_rich_markup_in_a_name_is_shown_as_written(make_runtime: Callable[..., Runtime], fake: FakeStream) -> None:
    runtime = make_runtime("a", call_storage_key="")
    odd = fake.add_recording("default:odd", b"x" * 10, filename="[bold]rec[/bold].mp4")
    out = io.StringIO()
    _render(run(runtime), "table", out)
    assert "[bold]rec[/bold].mp4" in out.getvalue() and odd.filename == "[bold]rec[/bold].mp4"
