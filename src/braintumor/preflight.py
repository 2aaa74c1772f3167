"""Checks a command runs before it does any work: can its outputs be written, do its inputs
exist and can they be read. A failed check is a one-line error and nothing has been written.
"""

from __future__ import annotations

import contextlib
import errno
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from braintumor.errors import BrainTumorError, ModelFormatError, OutputError


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or the closest folder above it that exists."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_output_folder(path: str | Path, option: str = "--out") -> None:
    """Raise :class:`OutputError` unless ``path`` is (or can become) a writable folder.

    Nothing is created: the folder that would hold the output, or the nearest existing one
    above it, gets a probe file that is removed at once (permission bits alone do not tell,
    e.g. for root or an immutable folder).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: {option} must be a folder, and this is an existing file")
    _probe(_nearest_existing(path), path, option)


def check_output_file(path: str | Path, option: str = "--out") -> None:
    """Raise :class:`OutputError` unless a file can be written at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: {option} must be a file name, and this is a folder")
    check_output_folder(path.parent, option)


def _probe(folder: Path, target: Path, option: str) -> None:
    if not folder.is_dir():
        raise OutputError(f"{target}: {option} cannot be created: {folder} is a file")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".braintumor-probe-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = f"{folder} is not writable ({reason})"
        raise OutputError(f"{target}: cannot write {option} here: {reason}") from error


@contextlib.contextmanager
def removed_on_user_error(folder: str | Path) -> Iterator[None]:
    """Remove ``folder`` if it did not exist before and a user error ends the block, so that a
    failed command leaves no empty or half-filled output folder behind."""
    folder = Path(folder)
    existed = folder.exists()
    try:
        yield
    except BrainTumorError:
        if not existed and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        raise


def checkpoint_problem(path: Path) -> str | None:
    """Why a resume checkpoint cannot be used, or None when it loads as plain tensors."""
    import torch  # slow to import; only the commands that resume need it

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return "it holds pickled Python objects (refused: loading them could run code)"
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, OSError) and error.errno == errno.EINVAL:  # torch's word for it
            detail = "not a complete checkpoint archive"
        return f"it is truncated or corrupt ({detail})"
    needed = ("state_dict", "epoch", "pytorch-lightning_version")
    if not isinstance(state, dict) or any(key not in state for key in needed):
        return f"it is not a Lightning training checkpoint (needs {', '.join(needed)})"
    return None


def check_resume_checkpoint(last: Path) -> None:
    """Raise :class:`ModelFormatError` when ``last`` (a run's ``last.ckpt``) cannot be resumed
    from; name ``best.ckpt`` beside it when that one is intact."""
    problem = checkpoint_problem(last)
    if problem is None:
        return
    best = last.with_name("best.ckpt")
    offer = "no intact best.ckpt beside it"
    if best.is_file() and checkpoint_problem(best) is None:
        offer = f"best.ckpt is intact: `cp {best} {last}` resumes from the best epoch"
    raise ModelFormatError(f"{last}: cannot resume, {problem}; {offer}")
