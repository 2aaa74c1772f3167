"""What the web app accepts: a bounded body, a file type told by its bytes, safe zip archives.

Every refusal is an :class:`UploadError` carrying the HTTP status the app answers with.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from braintumor.errors import BrainTumorError, ImageReadError
from braintumor.io.sniff import sniff_format

#: upload kinds the app accepts, by content
IMAGE_FORMATS = ("jpeg", "png", "tiff", "bmp")
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

# Zip limits: a DICOM series of a few hundred slices fits; a zip bomb does not.
MAX_ZIP_ENTRIES = 2000
MAX_ZIP_BYTES = 1 << 30
MAX_ZIP_RATIO = 200


class UploadError(BrainTumorError):
    """A request the app refuses, with its HTTP status (400, 413, 415, 422)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def sniff_upload(path: Path) -> str:
    """``image``, ``dicom``, ``nifti`` or ``zip`` from the file's first bytes; else 415."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        raise UploadError(400, "the uploaded file is empty")
    if head[:4] in ZIP_MAGICS:
        return "zip"
    try:
        fmt = sniff_format(path)
    except ImageReadError as error:
        raise UploadError(415, f"unsupported file type: {error.problem}") from None
    if fmt in IMAGE_FORMATS:
        return "image"
    if fmt in ("dicom", "nifti"):
        return fmt
    raise UploadError(
        415, f"unsupported file type {fmt!r}: send JPEG, PNG, TIFF, DICOM, NIfTI or zip"
    )


def _safe_member_name(name: str) -> str:
    """The entry's name if it stays inside the folder it is extracted to; else 400."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise UploadError(400, f"zip entry {name!r} points outside the archive; refused")
    return posix.name


def safe_extract_zip(
    archive: Path,
    dest: Path,
    max_entries: int = MAX_ZIP_ENTRIES,
    max_bytes: int = MAX_ZIP_BYTES,
    max_ratio: int = MAX_ZIP_RATIO,
) -> list[Path]:
    """Extract the regular files of ``archive`` flat into ``dest``; return their paths.

    Entries with absolute paths or ``..`` are refused (no path traversal), links are refused,
    and the declared and the actually inflated sizes are both bounded (no zip bomb): the total
    by ``max_bytes`` and each entry's compression ratio by ``max_ratio``. Files keep their base
    name behind a running number, so equal names in different folders do not collide.
    """
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise UploadError(400, f"not a readable zip archive ({error})") from None
    written: list[Path] = []
    with handle:
        members = [m for m in handle.infolist() if not m.is_dir()]
        if len(members) > max_entries:
            raise UploadError(413, f"zip holds {len(members)} files; at most {max_entries}")
        if sum(m.file_size for m in members) > max_bytes:
            raise UploadError(413, f"zip unpacks to more than {max_bytes >> 20} MiB")
        total = 0
        for index, member in enumerate(members):
            base = _safe_member_name(member.filename)
            if stat.S_ISLNK(member.external_attr >> 16):
                raise UploadError(400, f"zip entry {member.filename!r} is a link; refused")
            if not base or base.startswith(".") or base.startswith("__MACOSX"):
                continue
            if member.file_size > max_ratio * max(member.compress_size, 1) + (1 << 20):
                raise UploadError(413, f"zip entry {member.filename!r} is a compression bomb")
            target = dest / f"{index:05d}_{base}"
            # Count what really comes out: the declared sizes can lie.
            try:
                with handle.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            raise UploadError(413, f"zip unpacks to over {max_bytes >> 20} MiB")
                        out.write(chunk)
            except (
                zipfile.BadZipFile,
                RuntimeError,
                NotImplementedError,
                zlib.error,
                EOFError,
            ) as e:
                raise UploadError(
                    400, f"zip entry {member.filename!r} is unreadable ({e})"
                ) from None
            written.append(target)
    if not written:
        raise UploadError(422, "the zip archive holds no files")
    return written
