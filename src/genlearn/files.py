"""Files, opened without following links, written atomically, read into one-line errors.

Every file genlearn writes goes through `atomic_output` (or `atomic_write`): the bytes go to a
temporary file beside the target, are fsynced, and only then renamed over it. A full disk, a
file-size limit (RLIMIT_FSIZE: Python ignores SIGXFSZ, so the write fails with EFBIG), an error
or a Ctrl-C part-way therefore leaves the previous file as it was and no temporary behind; a
temporary of a process killed outright (SIGKILL) is removed by the next write of the same file.
A target that is a symbolic link is refused, never written through, and files written in place
(a run's `.lock`, appends to metrics.jsonl) are opened with O_NOFOLLOW and must be plain files
with no second name (hard link), so a run directory can never be made to overwrite another file.

Every file genlearn reads goes through `read_bytes` / `read_text` / `read_json`: a missing file,
a directory, a link where a run's own file should be, no permission, a path component over 255
bytes, bytes that are not UTF-8, JSON nested too deeply or holding an integer of thousands of
digits, and JSON of the wrong top-level type each become one `UserError` line.

This module is the bottom layer: it imports nothing of genlearn but `errors`.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from genlearn.errors import UserError

NAME_MAX = 255  # bytes in one path component (Linux, macOS)
PATH_MAX = 4096  # bytes in a whole path (Linux)
TMP_SUFFIX = ".tmp"
# Files genlearn itself writes are small (results, configs): anything larger is not one of them.
MAX_JSON_BYTES = 256 * 2**20
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


# ------------------------------------------------------------------------------------------------
# Paths and reasons


def shown(path: str | Path) -> str:
    """`path` as a message shows it: a path of absurd length is cut in the middle."""
    text = str(path)
    return text if len(text) <= 160 else f"{text[:70]}...{text[-70:]}"


def check_path(path: str | Path, what: str = "path") -> Path:
    """`path` as a Path, or one line when the system could not open it anyway: a component over
    255 bytes or a whole path over 4096 (ENAMETOOLONG), or a NUL byte in it."""
    text = os.fsencode(os.fspath(path))
    if b"\0" in text:
        raise UserError(f"{what} {shown(path)!r} contains a NUL byte")
    longest = max((len(part) for part in text.split(b"/")), default=0)
    if longest > NAME_MAX:
        raise UserError(
            f"{what} {shown(path)!r} has a name of {longest} bytes; a file or directory name may have "
            f"at most {NAME_MAX}"
        )
    if len(text) >= PATH_MAX:
        raise UserError(
            f"{what} {shown(path)!r} is {len(text)} bytes long; a path may have at most {PATH_MAX - 1}"
        )
    return Path(os.fspath(path))


def reason(exc: OSError) -> str:
    """Why an operating-system call failed, in words (a link and a long name spelled out)."""
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link (genlearn does not follow links there; remove the link)"
    if exc.errno == errno.ENAMETOOLONG:
        return f"a name in the path is longer than {NAME_MAX} bytes"
    if exc.errno == errno.EFBIG:
        return "the file-size limit was reached (ulimit -f)"
    return exc.strerror or str(exc)


def is_link(path: str | Path) -> bool:
    """True when `path` itself is a symbolic link (a dangling one too)."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def lexists(path: str | Path) -> bool:
    """Whether anything (a file, a directory, a link, even a dangling one) has this name; a
    path that cannot exist (a name over 255 bytes) is one line, not an exception."""
    check_path(path)
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    except OSError as exc:
        raise UserError(f"cannot look at {shown(path)}: {reason(exc)}") from None
    return True


def is_directory(path: str | Path) -> bool:
    """Whether `path` is a directory (through links); a path that cannot be looked at (a name
    over 255 bytes, no permission on a parent) is one line, not an exception."""
    check_path(path)
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise UserError(f"cannot look at {shown(path)}: {reason(exc)}") from None


def refuse_link(path: str | Path) -> None:
    """One line when `path` is a symbolic link: genlearn never writes or reads through one."""
    if is_link(path):
        raise UserError(
            f"{shown(path)} is a symbolic link; genlearn does not follow links in a run directory or "
            "write through them: remove the link"
        )


# ------------------------------------------------------------------------------------------------
# Writing


def _ignore_file_size_signal() -> None:
    """A write past RLIMIT_FSIZE raises SIGXFSZ, which kills the process unless ignored (CPython
    ignores it at start-up; an embedding program may not): ignored, the write fails with EFBIG
    and the caller cleans up."""
    sigxfsz = getattr(signal, "SIGXFSZ", None)
    if sigxfsz is None:
        return
    try:
        if signal.getsignal(sigxfsz) == signal.SIG_DFL:
            signal.signal(sigxfsz, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave signals alone
        pass


def _temporary_name(path: Path, pid: int) -> Path:
    """`.NAME.PID.tmp` beside `path`, NAME shortened so that the whole stays within 255 bytes."""
    tail = f".{pid}{TMP_SUFFIX}".encode()
    head = os.fsencode(path.name)[: NAME_MAX - len(tail) - 1]
    return path.with_name(os.fsdecode(b"." + head + tail))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


def sweep_temporaries(path: Path) -> None:
    """Remove the temporaries of `path` that processes killed outright (SIGKILL, a power cut)
    left behind; those of live processes (writing the same file right now) stay."""
    prefix = _temporary_name(path, 0).name[: -len(f"0{TMP_SUFFIX}")]
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix) : -len(TMP_SUFFIX)]
        if entry.name.startswith(prefix) and entry.name.endswith(TMP_SUFFIX) and pid.isdigit():
            if not _alive(int(pid)):
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass


def fsync_directory(directory: str | Path) -> None:
    """Make a rename in `directory` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_synced(path: str | Path, data: bytes) -> None:
    """Create `path` afresh (whatever had that name, a link included, is removed first, never
    written through), write `data`, fsync. On failure nothing is left at `path`."""
    path = Path(path)
    _ignore_file_size_signal()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise


def _failure(path: Path, existed: bool, exc: OSError) -> UserError:
    kept = "the previous file is kept as it was" if existed else "nothing was written"
    return UserError(f"cannot write {shown(path)}: {reason(exc)}; {kept}")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file to write `path` through: a temporary beside it, fsynced and renamed over
    `path` when the block ends without an exception. Any exception (a full disk, EFBIG, a
    KeyboardInterrupt) removes the temporary and leaves `path` as it was; an OSError becomes one
    `UserError` line. A `path` that is a symbolic link or a directory is refused."""
    path = check_path(path, "output file")
    refuse_link(path)
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise UserError(f"cannot write {shown(path)}: {reason(exc)}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UserError(f"cannot write {shown(path)}: it is a directory")
    existed = mode is not None
    _ignore_file_size_signal()
    sweep_temporaries(path)
    tmp = _temporary_name(path, os.getpid())
    try:
        try:
            os.unlink(tmp)  # our own leftover (a pid reused after a crash)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    except OSError as exc:
        raise _failure(path, existed, exc) from None
    try:
        if existed:  # keep the file's permissions
            os.fchmod(fd, stat.S_IMODE(mode))
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _failure(path, existed, exc) from None
        raise
    fsync_directory(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` (text as UTF-8) to `path` atomically (`atomic_output`)."""
    with atomic_output(path) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def _check_in_place(path: Path, fd: int) -> None:
    """A file written in place must be a plain file with one name: a FIFO, a device or a hard
    link to another file (whose content the write would change too) is refused."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UserError(f"{shown(path)} is not a plain file; remove it")
    if st.st_nlink > 1:
        os.close(fd)
        raise UserError(
            f"{shown(path)} is a hard link to another file ({st.st_nlink} names), which writing it "
            "would change too; remove it"
        )


def open_in_place(path: str | Path, append: bool = False) -> int:
    """A descriptor of `path` for writing in place (created if missing, never truncated here):
    not through a link (O_NOFOLLOW), and only a plain file with one name (`_check_in_place`)."""
    path = check_path(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | _NOFOLLOW | (os.O_APPEND if append else 0)
    _ignore_file_size_signal()
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise UserError(f"cannot write {shown(path)}: {reason(exc)}") from None
    _check_in_place(path, fd)
    os.set_blocking(fd, True)
    return fd


def append_text(path: str | Path, text: str) -> None:
    """Append `text` to `path` (O_APPEND, O_NOFOLLOW, a plain file with one name). A write cut
    short (a full disk) leaves a partial last line, which readers skip."""
    fd = open_in_place(path, append=True)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        raise UserError(f"cannot write {shown(path)}: {reason(exc)}") from None
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# Reading


def read_bytes(
    path: str | Path, what: str = "", follow_links: bool = False, limit: int | None = None
) -> bytes:
    """The bytes of `path`, or one line saying why not. A run's own files are read without
    following links (`follow_links=False`) and must be plain files (a FIFO would block, a device
    never end); files the user names (a config, captions) may be links, pipes included.
    `limit`: refuse a file larger than this many bytes."""
    path = check_path(path)
    label = f"{what} {shown(path)}" if what else shown(path)
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UserError(f"{label} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:
            refuse_link(path)
        raise UserError(f"cannot read {label}: {reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UserError(f"{label} is a directory, not a file")
        if not follow_links and not stat.S_ISREG(st.st_mode):
            raise UserError(f"{label} is not a plain file")
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                raise UserError(
                    f"{label} is larger than {limit / 2**20:.0f} MiB; it is not a file genlearn wrote"
                )
        return b"".join(chunks)
    except OSError as exc:
        raise UserError(f"cannot read {label}: {reason(exc)}") from None
    except MemoryError:
        raise UserError(f"{label} is too large to read into memory") from None
    finally:
        os.close(fd)


def read_text(
    path: str | Path,
    what: str = "",
    follow_links: bool = False,
    limit: int | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
) -> str:
    """`read_bytes` decoded; bytes that are not UTF-8 are one line naming where."""
    data = read_bytes(path, what, follow_links, limit)
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        label = f"{what} {shown(path)}" if what else shown(path)
        raise UserError(
            f"{label} is not UTF-8 text (byte {exc.start} is {data[exc.start : exc.start + 1]!r})"
        ) from None


def parse_json(text: str, label: str) -> Any:
    """JSON text -> value, every way it can be malformed one line naming `label`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{label} is corrupt: {exc}") from None
    except RecursionError:
        raise UserError(f"{label} is corrupt: its arrays or objects are nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        first = (str(exc).splitlines() or [type(exc).__name__])[0].split(";")[0]
        raise UserError(f"{label} is corrupt: {first}") from None


def read_json(
    path: str | Path, what: str = "", follow_links: bool = False, top: type | tuple[type, ...] = dict
) -> Any:
    """A JSON file's value, which must be of type `top` (an object by default)."""
    label = f"{what} {shown(path)}" if what else shown(path)
    value = parse_json(read_text(path, what, follow_links, MAX_JSON_BYTES), label)
    if not isinstance(value, top):
        names = " or ".join(
            {dict: "an object", list: "an array"}.get(t, t.__name__)
            for t in (top if isinstance(top, tuple) else (top,))
        )
        raise UserError(f"{label} is not {names} at the top level (it is {type(value).__name__})")
    return value


def raise_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, as Ctrl-C does, so that a command stopped by `kill`
    cleans up like one stopped from the keyboard (temporaries removed, previous files kept).
    Only from the main thread; training installs its own handler meanwhile."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:
        pass
