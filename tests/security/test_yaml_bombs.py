"""YAML "billion laughs" through the real command line: aliases that repeat an anchored list
many times. The loaders walk the alias graph as a tree, so a 230 KB rule pack whose 2,000
rules each name one list of 5,000 phrases meant ten million phrases (minutes of CPU, growing
memory); it is refused at once, naming the file and the line."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_bad_inputs import one_error_line, qa

_PHRASES = "\n".join(f"      - phrase number {i}" for i in range(5000))


def _pack(rules: int) -> str:
    head = ("name: laughs\nlanguage: en\nforbidden:\n  - id: f0\n    points: 100\n"
            "    prompt: stop\n    phrases: &many\n" + _PHRASES + "\n")
    return head + "".join(f"  - id: f{i}\n    points: 0\n    prompt: stop\n    phrases: *many\n"
                          for i in range(1, rules))


def test_a_rule_pack_that_repeats_an_anchor_is_refused_at_once(tmp_path: Path) -> None:
    pack = tmp_path / "laughs.yaml"
    pack.write_text(_pack(2000), encoding="utf-8")
    result = qa("rules", "check", str(pack), timeout=30)
    one_error_line(result, r"laughs\.yaml:\d+: .*expands to over 200,000 values through its "
                           r"aliases")


def test_a_label_file_of_nested_aliases_is_refused(tmp_path: Path, shared_audio: Path) -> None:
    # The classic: nine lists of nine aliases of the previous list (387 million values).
    lines = ['x0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    labels = tmp_path / "labels.yaml"
    labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    folder = tmp_path / "calls"
    folder.mkdir()
    (folder / "call.wav").symlink_to(shared_audio / "en_librivox_austen_0870.wav")
    result = qa("backtest", str(folder), "--rules", "examples/rules/en_support.yaml",
                "--labels", str(labels), "--model", "/nonexistent/model", timeout=30)
    one_error_line(result, r"labels\.yaml:\d+: .*expands to over 200,000 values")


def test_a_pack_that_shares_a_list_a_few_times_still_loads(tmp_path: Path) -> None:
    pack = tmp_path / "shared.yaml"
    pack.write_text(_pack(3), encoding="utf-8")
    result = qa("rules", "check", str(pack), timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
