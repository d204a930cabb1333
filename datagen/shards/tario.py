"""The tar byte layout of a shard, and grouping a tar stream's members into samples.

Members are written as plain USTAR regular files (no PAX or GNU long-name records) because wids'
memory-mapped indexer reads raw 512-byte headers and would mis-key a long-name extension record.
So a member name must fit USTAR's 100-byte name field.
"""
from __future__ import annotations

import tarfile
from typing import BinaryIO, Iterator

BLOCK = 512
RECORD = 20 * BLOCK  # tar's record size; archives are padded to a multiple of it, as tarfile does
MAX_MEMBER_NAME = 100


def member_header(name: str, size: int, mtime: int) -> bytes:
    """The 512-byte USTAR header of a regular file ``name`` of ``size`` bytes (mode 0444, owner 0,
    no user or group name): byte for byte what ``tarfile.TarInfo.tobuf(USTAR_FORMAT)`` produces,
    built directly because ``tobuf`` costs more than writing a small member's data."""
    raw = name.encode("utf-8")
    if len(raw) > MAX_MEMBER_NAME:
        raise ValueError(f"tar member name {name!r} is longer than {MAX_MEMBER_NAME} bytes")
    if not 0 <= size < 8**11 or not 0 <= mtime < 8**11:
        raise ValueError(f"size {size} or mtime {mtime} does not fit a USTAR header")
    header = bytearray(_HEADER_TEMPLATE)
    header[0:len(raw)] = raw
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"%011o\0" % mtime
    # The checksum is the byte sum with its own field read as spaces (as the template holds).
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


def _header_template() -> bytes:
    header = bytearray(BLOCK)
    header[100:108] = b"0000444\0"  # mode
    header[108:116] = header[116:124] = b"0000000\0"  # uid, gid
    header[148:156] = b" " * 8  # checksum placeholder
    header[156:157] = tarfile.REGTYPE
    header[257:265] = tarfile.POSIX_MAGIC  # b"ustar\x0000"
    return bytes(header)


_HEADER_TEMPLATE = _header_template()


def padding(size: int) -> bytes:
    """Zero bytes that round a member's data of ``size`` bytes up to a whole block."""
    return b"\0" * (-size % BLOCK)


def member_span(size: int) -> int:
    """Bytes a member of ``size`` data bytes takes in the archive (header + padded data)."""
    return BLOCK + size + (-size % BLOCK)


def end_of_archive(offset: int) -> bytes:
    """The two zero blocks that end an archive, padded so the archive is a whole number of records."""
    end = offset + 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-end % RECORD))


def archive_size(offset: int) -> int:
    """Size of a finished archive whose members end at ``offset``."""
    return offset + len(end_of_archive(offset))


def split_member_name(name: str) -> tuple[str, str]:
    """``"abc.src.png"`` -> ``("abc", "src.png")``: WebDataset's key ends at the first dot of the
    file name (a folder part, if any, stays with the key)."""
    folder, _, base = name.rpartition("/")
    key, dot, ext = base.partition(".")
    if not dot:
        raise ValueError(f"tar member {name!r} has no extension, so it belongs to no sample")
    return (f"{folder}/{key}" if folder else key), ext


def iter_tar_samples(fileobj: BinaryIO) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream a WebDataset tar and yield ``(key, {ext: bytes})`` per sample, in archive order.

    Members of one sample must be consecutive (as WebDataset requires); a key that reappears after
    another key raises ``ValueError``. Non-regular members (folders, links) are ignored.
    """
    seen: set[str] = set()
    key, members = None, {}
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for info in tar:
            if not info.isreg():
                continue
            member_key, ext = split_member_name(info.name)
            if member_key != key:
                if key is not None:
                    yield key, members
                if member_key in seen:
                    raise ValueError(f"sample {member_key!r} is split across the archive")
                seen.add(member_key)
                key, members = member_key, {}
            members[ext] = tar.extractfile(info).read()
    if key is not None:
        yield key, members
