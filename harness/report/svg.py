"""A scenario's message sequence drawn as an SVG sequence diagram, for the HTML report.

People follow a payment across three systems faster as arrows between lifelines than as table
rows, so each scenario's sequence is drawn above its table (which stays as the detail view):
one lifeline per system that took part, one arrow per line of the sequence, numbered as the
table numbers them, labelled with the call and what came back. A nested call (TPAS paying the
CMS inside the phone's payment) is an arrow between its own lifelines; the answer to a call
that made nested calls is a dashed arrow back. An exchange an injected fault affected is drawn
in the error colour, and when the caller never got the answer, its arrowhead is crossed out.

The drawing is plain SVG markup inside the page: no script, no external reference, no `style`
attribute (the report's Content-Security-Policy allows none), so it reads anywhere the page
does. Every label is escaped here; the full line of each arrow is its tooltip (`<title>`).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Protocol

# Systems in the order a payment meets them; any other party is drawn after these.
PARTY_ORDER = ("Harness", "EGM", "Phone", "Trustly", "TPAS", "CMS", "Bank")
LANE_GAP = 170  # px between lifelines
MARGIN = 110  # px left of the first lifeline and right of the last (answers go there)
HEADER = 34  # px of the party boxes
ROW = 34  # px per arrow
LABEL_CHARS = 44  # a call's label is cut here; the tooltip has it whole

_COLOURS = {"ok": "#187a4e", "redirect": "#8a6d00", "bad": "#b42318", "none": "#5b6270"}
_FAULT = "#b42318"
_LINE = "#98a2b3"


class DrawnRow(Protocol):
    """What the diagram needs of one sequence line (the report's `RowView` has it)."""

    @property
    def n(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def sender(self) -> str: ...

    @property
    def receiver(self) -> str: ...

    @property
    def call(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def status_class(self) -> str: ...

    @property
    def note(self) -> str: ...

    @property
    def latency(self) -> str: ...

    @property
    def fault(self) -> str: ...

    @property
    def unseen(self) -> bool: ...


def parties(rows: Sequence[DrawnRow]) -> list[str]:
    """The systems that took part, known ones in payment order, others as they appear."""
    seen: list[str] = []
    for row in rows:
        for party in (row.sender, row.receiver):
            if party not in seen:
                seen.append(party)
    known = [party for party in PARTY_ORDER if party in seen]
    return known + [party for party in seen if party not in PARTY_ORDER]


def _cut(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _answer(row: DrawnRow) -> str:
    parts = [part for part in (row.status, row.note, row.latency) if part]
    return " ".join(parts)


def _arrow(row: DrawnRow, index: int, x_of: dict[str, int], marker: str) -> str:
    y = HEADER + 26 + index * ROW
    x1, x2 = x_of[row.sender], x_of[row.receiver]
    colour = _FAULT if row.fault else _COLOURS.get(row.status_class, _COLOURS["none"])
    classes = f"arrow k-{row.kind}" + (" faulted" if row.fault else "")
    dash = ' stroke-dasharray="6 4"' if row.kind == "response" else ""
    label = f"{row.n}. {_cut(row.call)}"
    answer = _answer(row)
    tooltip = f"{row.n}. {row.sender} → {row.receiver}: {row.call}"
    if answer:
        tooltip += f" → {answer}"
    if row.fault:
        tooltip += f" ({row.fault})"
    parts = [f'<g class="{classes}" data-n="{row.n}" data-from="{escape(row.sender)}" '
             f'data-to="{escape(row.receiver)}"><title>{escape(tooltip)}</title>']
    if x1 == x2:  # a system calling itself: a small loop to the right
        parts.append(f'<path d="M{x1} {y - 8} h26 v16 h-26" fill="none" stroke="{colour}" '
                     f'stroke-width="1.6"{dash} marker-end="url(#{marker})"/>')
        text_x, anchor = x1 + 32, "start"
    else:
        end = x2 - 6 if x2 > x1 else x2 + 6
        parts.append(f'<line x1="{x1}" y1="{y}" x2="{end}" y2="{y}" stroke="{colour}" '
                     f'stroke-width="1.6"{dash} marker-end="url(#{marker})"/>')
        text_x, anchor = (x1 + x2) // 2, "middle"
    parts.append(f'<text x="{text_x}" y="{y - 6}" text-anchor="{anchor}" font-size="11" '
                 f'fill="#1d2433">{escape(label)}</text>')
    if answer and x1 != x2:  # what came back, beside the arrowhead
        answer_x, side = (x2 + 10, "start") if x2 > x1 else (x2 - 10, "end")
        parts.append(f'<text x="{answer_x}" y="{y + 4}" text-anchor="{side}" font-size="10" '
                     f'fill="{colour}">{escape(_cut(answer, 28))}</text>')
    if row.unseen:  # the caller never received this answer: cross out the arrowhead
        cx = x2 - 14 if x2 > x1 else x2 + 14
        parts.append(f'<path class="dropped" d="M{cx - 5} {y - 5} l10 10 M{cx + 5} {y - 5} '
                     f'l-10 10" stroke="{_FAULT}" stroke-width="2"/>')
    parts.append("</g>")
    return "".join(parts)


def _marker(ident: str, colour: str) -> str:
    return (f'<marker id="{ident}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0 0 L10 5 L0 10 z" fill="{colour}"/>'
            '</marker>')


def sequence_svg(rows: Sequence[DrawnRow], ident: str) -> str:
    """The diagram of `rows` as one `<svg>` element ("" when there is nothing to draw).

    `ident` makes the element's ids unique in the page (one diagram per scenario).
    """
    if not rows:
        return ""
    names = parties(rows)
    x_of = {name: MARGIN + index * LANE_GAP for index, name in enumerate(names)}
    width = 2 * MARGIN + (len(names) - 1) * LANE_GAP
    height = HEADER + 26 + len(rows) * ROW
    marker = f"{escape(ident)}-head"
    fault_marker = f"{escape(ident)}-fault"
    out = [f'<svg class="sequence-diagram" xmlns="http://www.w3.org/2000/svg" role="img" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'aria-label="Message sequence: {len(rows)} messages between '
           f'{escape(", ".join(names))}">',
           f'<defs>{_marker(marker, "#475467")}{_marker(fault_marker, _FAULT)}</defs>']
    for name in names:
        x = x_of[name]
        out.append(f'<g class="lifeline" data-party="{escape(name)}">'
                   f'<rect x="{x - 48}" y="2" width="96" height="{HEADER - 8}" rx="5" '
                   f'fill="#eef2f7" stroke="{_LINE}"/>'
                   f'<text x="{x}" y="{HEADER - 13}" text-anchor="middle" font-size="12" '
                   f'font-weight="600" fill="#1d2433">{escape(_cut(name, 14))}</text>'
                   f'<line x1="{x}" y1="{HEADER - 6}" x2="{x}" y2="{height}" stroke="{_LINE}" '
                   'stroke-dasharray="3 4"/></g>')
    out += [_arrow(row, index, x_of, fault_marker if row.fault else marker)
            for index, row in enumerate(rows)]
    out.append("</svg>")
    return "".join(out)
