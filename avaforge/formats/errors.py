"""Errors and problem reports that say what is wrong and where."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class FormatError(ValueError):
    """A file or value that does not follow its format; ``where`` names the file and line or region."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One finding of a reader or the validator; ``code`` is stable for scripts, ``message`` is for people."""

    severity: Severity
    code: str
    message: str
    where: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, str]:
        return {
            "severity": str(self.severity),
            "code": self.code,
            "message": self.message,
            "where": self.where,
        }


def read_bytes(path: str | Path) -> bytes:
    """Read a file, turning a missing file or a directory into a FormatError naming it."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise FormatError("file not found", str(p)) from None
    except IsADirectoryError:
        raise FormatError("is a directory, expected a file", str(p)) from None


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file, turning a missing file or bad encoding into a FormatError naming it."""
    return decode_utf8(read_bytes(path), str(path))


def decode_utf8(raw: bytes, where: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})", where
        ) from None
    return text.removeprefix("\ufeff")
