"""The status page's call (``GET /?call=<type:id or id>``): its sessions, each file with its state at
every destination (bytes, SHA-256, key, errors; an archived one with a download button, which asks
``POST /links/<transfer id>`` for a fresh link: `worker.edge.web.links`), each session's manifest, and the
notifications sent about it. Behind the page's token, escaped like the rest of it
(`worker.edge.web.status_page`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from worker.edge.web import paths
from worker.edge.web.status_page import esc, table, when
from worker.ledger.calls import Call, CallFile, Manifest, manifests_of, read_call, session_event
from worker.ledger.store import Ledger
from worker.notify.about import Sent, events_about, subjects_of

MAX_QUERY = 200  # characters of a search: a call cid is far shorter


@dataclass(frozen=True)
class CallView:
    call: Call
    manifests: dict[tuple[str, str], list[Manifest]]  # (call cid, session id) → its manifests
    sent: list[Sent]


def read_call_view(ledger: Ledger, query: str) -> CallView:
    """What the page shows of the call(s) `query` names, in a bounded number of round trips."""
    call = read_call(ledger, query[:MAX_QUERY])
    sessions = [s for s in call.sessions() if s[1]]
    manifests = {s: manifests_of(ledger, *s) for s in sessions}
    announced = [session_event(*s) for s in sessions]
    transfer_ids = [t.id for f in call.files for t in f.transfers]
    return CallView(call, manifests, events_about(ledger, subjects_of(ledger, call.call_cids, transfer_ids,
                                                                       announced)))


def search_form(query: str) -> str:
    return (f'<form id="call-search" method="get" action="{paths.STATUS}"><label for="call">Call</label> '
            f'<input id="call" name="call" value="{esc(query)}" placeholder="type:id or id" maxlength="{MAX_QUERY}">'
            ' <button type="submit">show</button></form>')


def _size(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def download_button(transfer_id: str) -> str:
    """A form asking the receiver for a fresh link to an archived transfer's object (POST: it makes a
    credential, so no page load or prefetch makes one)."""
    action = esc(f"{paths.LINKS}/{quote(transfer_id, safe='')}")
    return f'<form class="download" method="post" action="{action}"><button type="submit">download</button></form>'


def _rows(file: CallFile) -> list[list[str]]:
    f = file.fields
    head = [esc(f.get("kind", "")), esc(f.get("filename", ""))]
    if not file.transfers:
        state = file.state or "no destination"
        error = f'<span class="error">{esc(f.get("routing_error", ""))}</span>'
        return [[*head, "", esc(state), "", "", "", "", error, ""]]
    return [[*head, esc(t.storage), esc(t.state), esc(_size(t.bytes)), f"<code>{esc(t.sha256 or '')}</code>",
             esc(t.key), esc(t.attempts), f'<span class="error">{esc(t.error or "")}</span>',
             download_button(t.id) if t.state == "archived" else ""] for t in file.transfers]


def _session(view: CallView, call_cid: str, session_id: str, files: list[CallFile]) -> str:
    title = f"session {session_id}" if session_id else "no session"
    manifests = view.manifests.get((call_cid, session_id), [])
    listed = "".join(f"<li>{esc(m.storage)}: <code>{esc(m.key)}</code> sha256 <code>{esc(m.sha256)}</code></li>"
                     for m in manifests)
    manifest = f"<ul>{listed}</ul>" if listed else ' <span class="empty">none recorded</span>'
    rows = [row for file in files for row in _rows(file)]
    listing = table(["kind", "file", "storage", "state", "bytes", "sha256", "key", "attempts", "error", "link"], rows,
                    "")
    return (f'<section class="session" data-call="{esc(call_cid)}" data-session="{esc(session_id)}">'
            f'<h3>{esc(call_cid)}: {esc(title)}</h3>\n<div class="manifests">Manifest:{manifest}</div>\n'
            f"{listing}</section>")


def _notifications(view: CallView) -> str:
    rows = []
    for sent in view.sent:
        e = sent.event
        head = [esc(when(e.created_at.timestamp() * 1000) if e.created_at else ""), esc(e.type), esc(e.id),
                esc(e.subject)]
        for d in sent.deliveries or ():
            rows.append([*head, esc(d.endpoint), esc(d.state), esc(d.attempts), esc(d.last_status or ""),
                         f'<span class="error">{esc(d.last_error or "")}</span>'])
        if not sent.deliveries:
            rows.append([*head, "", "", "", "", ""])
    return table(["created", "event", "id", "subject", "endpoint", "delivery", "attempts", "last status",
                   "last error"], rows, "no notification about this call")


def render_call(view: CallView) -> str:
    """The call's section of the page (everything escaped)."""
    call = view.call
    if not call.files:
        return (f'<section id="call-view"><h2>Call {esc(call.query)}</h2>'
                f'<p class="empty">no file of call {esc(call.query)} in the ledger</p></section>')
    sessions = "\n".join(_session(view, cid, sid, files) for (cid, sid), files in call.sessions().items())
    more = f'<p class="more">{esc(call.more)} more file(s) not shown</p>' if call.more else ""
    return (f'<section id="call-view"><h2>Call {esc(call.query)}</h2>\n'
            f"<p>{esc(len(call.files))} file(s) of {esc(', '.join(call.call_cids))}</p>\n{sessions}{more}\n"
            f"<h3>Notifications about this call</h3>\n{_notifications(view)}</section>")
