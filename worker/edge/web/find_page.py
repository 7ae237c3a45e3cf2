"""The status page's search of archived files (``GET /?find=<call id, type:id, or KEY=VALUE>``): the
newest `LIMIT` archived files of a call, or of the calls whose custom data has a value, from the index
of `archiver find` (`worker.ledger.search`), with the storage and key of each, and a download button
(a fresh link: ``POST /links/<id>``). Behind the page's token, escaped like the rest of it
(`worker.edge.web.status_page`).
"""

from __future__ import annotations

from worker.clock import rfc3339
from worker.edge.web import paths
from worker.edge.web.call_page import download_button
from worker.edge.web.status_page import esc, table
from worker.ledger.search import FindQuery, Found, find
from worker.ledger.store import Ledger

LIMIT = 50  # files shown: the page stays small whatever matches
MAX_QUERY = 200  # characters of a search


def query_of(text: str) -> FindQuery:
    """A search as typed: ``KEY=VALUE`` is a custom term, anything else a call (its cid or its id)."""
    text = text.strip()[:MAX_QUERY]
    return FindQuery(custom=(text,)) if "=" in text else FindQuery(call=text)


def read_found(ledger: Ledger, text: str) -> Found:
    """The newest `LIMIT` archived files the search names (none for an empty one)."""
    text = text.strip()
    if not text or text.startswith("="):
        return Found((), False)
    return find(ledger, query_of(text), LIMIT)


def search_form(text: str) -> str:
    return (f'<form id="find-search" method="get" action="{paths.STATUS}"><label for="find">Archived files of '
            f'a call or a custom value</label> <input id="find" name="find" value="{esc(text)}" '
            f'placeholder="type:id, id, or key=value" maxlength="{MAX_QUERY}"> <button type="submit">find</button>'
            "</form>")


def render_found(text: str, found: Found) -> str:
    """The results' section (everything escaped)."""
    rows = [[esc(m.transfer.call_cid), esc(m.transfer.kind), esc(m.transfer.filename), esc(m.transfer.storage),
             f"<code>{esc(m.transfer.key)}</code>",
             esc("" if m.transfer.bytes is None else f"{m.transfer.bytes:,}"),
             esc(rfc3339(m.transfer.updated_at) or ""), download_button(m.transfer.id)] for m in found.matches]
    listing = table(["call", "kind", "file", "storage", "key", "bytes", "archived", ""], rows,
                    f"no archived file of {text.strip()}")
    more = (f'<p class="more">only the {LIMIT} newest are shown: more match (<code>archiver find</code> lists '
            "them all)</p>") if found.more else ""
    return f'<section id="find-results"><h2>Archived files: {esc(text.strip())}</h2>\n{listing}{more}</section>'


def section(ledger: Ledger, text: str) -> str:
    """The search form, then, when there is a search, its results."""
    text = text.strip()
    return search_form(text) + (f"\n{render_found(text, read_found(ledger, text))}" if text else "")
