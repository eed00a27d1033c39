"""SIPREC recording metadata (XML in the INVITE body, from whoever reaches the SIP port):
a DTD is refused whatever the encoding, so no entity is ever expanded. The real parser
(`qa.sources.sip.siprec.parse_metadata`, expat underneath) reads each body."""

from __future__ import annotations

import pytest

from qa.errors import SignallingError
from qa.sources.sip.siprec import parse_metadata

_DOC = """<?xml version="1.0" encoding="{encoding}"?>
<!DOCTYPE recording [<!ENTITY who "{expansion}">]>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <participant participant_id="p1"><nameID aor="sip:a@x"><name>&who;</name></nameID></participant>
</recording>"""


@pytest.mark.parametrize("encoding", ["UTF-16", "UTF-16-LE", "UTF-16-BE"])
def test_a_dtd_in_utf16_metadata_is_refused(encoding: str) -> None:
    # In UTF-16 the bytes of `<!DOCTYPE` are interleaved with zeros, so the byte check missed
    # it and expat expanded the entity into the participant's name.
    body = _DOC.format(encoding="UTF-16", expansion="expanded-entity").encode(encoding.lower())
    with pytest.raises(SignallingError, match="not UTF-8"):
        parse_metadata(body)


def test_an_entity_bomb_in_utf16_is_refused_before_it_expands() -> None:
    entities = '<!ENTITY a0 "' + "x" * 1000 + '">' + "".join(
        f'<!ENTITY a{i} "' + f"&a{i - 1};" * 10 + '">' for i in range(1, 7))
    body = (f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE recording [{entities}]>'
            '<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
            "<datamode>&a6;</datamode></recording>").encode("utf-16")
    with pytest.raises(SignallingError, match="not UTF-8"):
        parse_metadata(body)


def test_a_dtd_in_utf8_metadata_is_refused_and_plain_metadata_is_read() -> None:
    with pytest.raises(SignallingError, match="DTD"):
        parse_metadata(_DOC.format(encoding="UTF-8", expansion="x").encode())
    plain = _DOC.replace('<!DOCTYPE recording [<!ENTITY who "{expansion}">]>\n', "").replace(
        "&who;", "Alice").format(encoding="UTF-8")
    metadata = parse_metadata(plain.encode())
    assert [(pid, p.name) for pid, p in metadata.participants] == [("p1", "Alice")]
