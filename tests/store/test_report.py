"""The HTML review report, parsed back with html.parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

from qa.report import render_call
from qa.store import CallStore
from qa.types import Segment, Speaker

from .conftest import CALL_ID, SAMPLE_INFO

_VOID = {"meta", "br", "link", "img", "input", "hr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def descendants(self) -> list[Element]:
        return [d for c in self.children for d in (c, *c.descendants())]


class _Tree(HTMLParser):
    """Collects every element with its full text, checking that tags nest properly."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[Element] = []
        self.all: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        if self.stack:
            self.stack[-1].children.append(element)
        self.all.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1].tag == tag, f"misnested </{tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text += data


def parse(page: str) -> list[Element]:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == []
    return tree.all


def find(elements: list[Element], tag: str, cls: str) -> list[Element]:
    return [e for e in elements if e.tag == tag and cls in e.classes]


def test_report_marks_hits_in_the_transcript(filled: CallStore) -> None:
    elements = parse(render_call(filled.call(CALL_ID)))

    lines = find(elements, "li", "seg")
    assert [(sorted(e.classes - {"seg"}), e.attrs["data-start"]) for e in lines] == [
        (["agent"], "0.50"), (["customer"], "3.00"), (["agent"], "6.50"), (["customer"], "9.00")
    ]  # fmt: skip
    assert "Hello, thank you for calling" in lines[0].text
    assert "我不知道怎么办" in lines[3].text

    # The forbidden phrase at 7.0 s is highlighted inside the agent's line that holds it.
    marks = [(m.attrs["data-rule"], m.text) for m in find(elements, "mark", "hit")]
    assert ("no_shirking", "not my problem") in marks
    assert ("greeting", "Hello") in marks
    inside = lines[2].descendants()
    (badge,) = find(inside, "span", "hit")
    assert badge.attrs["data-rule"] == "no_shirking"
    assert badge.text == "0:07.0 no_shirking -10"
    assert [m.text for m in find(inside, "mark", "hit")] == ["not my problem"]
    assert find(lines[1].descendants(), "span", "hit") == []

    # The missed deadline at 15 s falls in silence: it gets its own line, after the last one.
    (row,) = find(elements, "li", "hit-row")
    assert row.attrs["data-start"] == "15.00"
    assert "Verify the caller's identity" in row.text
    ordered = [e for e in elements if e.tag == "li"]
    assert ordered[-1] is row


def test_report_has_timeline_and_scorecard(filled: CallStore) -> None:
    filled.add_override(CALL_ID, "no_shirking", points=20, reviewer="ann", reason="quoted")
    elements = parse(render_call(filled.call(CALL_ID)))

    events = find(elements, "tr", "event")
    assert [e.children[2].text for e in events] == ["greeting", "no_shirking", "verify_identity"]
    assert len(find(elements, "span", "tick")) == 3

    items = {
        e.attrs["data-rule"]: [c.text for c in e.children] for e in find(elements, "tr", "item")
    }
    assert items["greeting"] == ["greeting", "Greets the caller", "10", "10", "10", "hello",
                                 "0:00.9"]  # fmt: skip
    assert items["no_shirking"][2:6] == ["20", "10", "20", "not my problem"]
    (changed,) = find(elements, "tr", "changed")
    assert changed.attrs["data-rule"] == "no_shirking"
    (override,) = find(elements, "tr", "override")
    assert [c.text for c in override.children][1:] == ["no_shirking", "10", "20", "ann", "quoted"]
    (total,) = find(elements, "p", "total")
    assert total.text == "Score 95 (band 90-95); automatic 85 (band 80-85)"


def test_report_escapes_text(store: CallStore) -> None:
    store.start_call(SAMPLE_INFO)
    store.add_segment(
        Segment(CALL_ID, Speaker.CUSTOMER, 0.0, 1.0, "<script>alert(1)</script> & co")
    )
    page = render_call(store.call(CALL_ID))
    assert "<script>" not in page
    (line,) = find(parse(page), "li", "seg")
    assert "<script>alert(1)</script> & co" in line.text
    assert "Not scored yet." in page
