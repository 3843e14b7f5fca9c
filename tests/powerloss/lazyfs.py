"""A FUSE filesystem that forgets what was not synced, for power-loss tests (after Jepsen's
LazyFS): ``python lazyfs.py STORE MOUNTPOINT`` serves one flat directory whose files live in
this process's memory; only ``fsync``/``fdatasync`` and a directory ``fsync`` write them to
STORE on the real disk. A power cut is a SIGKILL of this process: what it held in memory
is gone, and the next mount of STORE shows the disk as the last syncs left it.

What survives a cut (strict POSIX, stricter than ext4 in practice):

* a file's data and size: as of its last ``fsync``/``fdatasync`` (any descriptor of it);
  every later write, truncate or extension is lost;
* names (create, unlink, rename): as of the directory's last ``fsync``; a file created
  since is gone (even if its data was synced), a file unlinked or renamed since is back
  under its old name, with the data of its own last sync.

Two kinds of cut:

* ``SIGKILL`` of this process: every unsynced write is lost (a sync cut halfway leaves
  some of its blocks written);
* a write of ``keep=P seed=S`` to the control file ``/.lazyfs-cut``: each unsynced
  4 KiB block reaches the disk with probability P (the page cache wrote some dirty pages
  back, in no order), then the process exits at once. Names stay as last synced. Options
  in the same write:

  * ``sector=1``: each 512-byte sector of an unsynced block reaches the disk on its own
    (probability P), so a block can be torn: part new, part old (a disk writes sectors
    atomically, not filesystem blocks);
  * ``meta=1``: the metadata reached the disk without the data (a journaling filesystem
    commits its journal before the data blocks, as ext4 ``data=writeback`` may): every
    file's current size and the current names are what the disk keeps, while unsynced
    data blocks follow ``keep`` as above, so a grown file reads zeros where its data was.

Failing fsync: a write of ``eio=N`` to the control file makes the next N ``fsync`` or
``fdatasync`` calls fail with ``EIO``, as Linux reports a write-back error: the dirty
blocks are dropped as if written (the page cache marks them clean, they never reach the
disk) and reads still show them until the next cut; the fsync after that succeeds
("fsyncgate": a program that retries the fsync is told its data is safe when it is not).

STORE holds ``names.json`` (the synced directory: name -> inode number) and one
``ino-N`` file per inode (its synced data). The real disk is not cut, so STORE is written
without fsync.

Binding: mfusepy (ctypes over Debian's libfuse3, maintained fork of fusepy) installs from
PyPI as pure Python; pyfuse3 needs a C build against libfuse3-dev plus trio, and fusepy
is unmaintained and libfuse2-only.
"""

from __future__ import annotations

import errno
import json
import os
import random
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mfusepy

__all__ = ["BLOCK", "LazyFs", "main"]

BLOCK = 4096  # unit of the unsynced-write bookkeeping
SECTOR = 512  # what a disk writes atomically
NAMES = "names.json"
CONTROL = ".lazyfs-cut"  # write "keep=P seed=S" here to cut the power


@dataclass
class _Node:
    """One file: its current (volatile) data and what changed since its last sync."""

    ino: int
    data: bytearray
    mode: int = stat.S_IFREG | 0o644
    dirty: set[int] = field(default_factory=set)  # blocks written since the last sync
    mtime_ns: int = field(default_factory=time.time_ns)


class LazyFs(mfusepy.Operations):
    """The filesystem; single-threaded (``nothreads``), so no locking."""

    use_ns = True

    def __init__(self, store: Path) -> None:
        self.store = store
        store.mkdir(parents=True, exist_ok=True)
        self.names: dict[str, _Node] = {}
        self.handles: dict[int, _Node] = {}
        self.next_fh = 1
        synced = self._load_names()
        for name, ino in synced.items():
            blob = self.store / f"ino-{ino}"
            data = bytearray(blob.read_bytes()) if blob.exists() else bytearray()
            self.names[name] = _Node(ino, data)
        # Inodes no synced name reaches are garbage of the last power-on.
        live = {f"ino-{n.ino}" for n in self.names.values()}
        for path in self.store.glob("ino-*"):
            if path.name not in live:
                path.unlink()
        self.next_ino = max((n.ino for n in self.names.values()), default=0) + 1
        self.root_mtime_ns = time.time_ns()
        self.failing_fsyncs = 0  # armed by ``eio=N``

    def _load_names(self) -> dict[str, int]:
        path = self.store / NAMES
        if not path.exists():
            return {}
        loaded: dict[str, int] = json.loads(path.read_text())
        return loaded

    # --- lookup --------------------------------------------------------------------------

    def _node(self, path: str, fh: int | None = None) -> _Node:
        if fh is not None and fh in self.handles:
            return self.handles[fh]
        node = self.names.get(self._name(path))
        if node is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return node

    @staticmethod
    def _name(path: str) -> str:
        name = path.lstrip("/")
        if "/" in name:  # one flat directory: nothing can be below a file
            raise mfusepy.FuseOSError(errno.ENOENT)
        return name

    def _open_handle(self, node: _Node) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        return fh

    # --- metadata ------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        now = self.root_mtime_ns
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_mtime": now}
        if path == "/" + CONTROL:
            return {"st_mode": stat.S_IFREG | 0o200, "st_nlink": 1, "st_size": 0}
        node = self._node(path, fh)
        size = len(node.data)
        return {
            "st_mode": node.mode,
            "st_nlink": 1,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_blksize": BLOCK,
            "st_mtime": node.mtime_ns,
            "st_ctime": node.mtime_ns,
            "st_atime": node.mtime_ns,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        if path != "/":
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        return [".", "..", *self.names]

    def statfs(self, path: str) -> dict[str, int]:
        return {
            "f_bsize": BLOCK,
            "f_frsize": BLOCK,
            "f_blocks": 1 << 20,
            "f_bfree": 1 << 19,
            "f_bavail": 1 << 19,
            "f_files": 1 << 16,
            "f_ffree": 1 << 15,
            "f_namemax": 255,
        }

    def chmod(self, path: str, mode: int) -> int:
        node = self._node(path)
        node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        self._node(path)
        return 0  # one owner: the tests run as one user

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self._node(path).mtime_ns = times[1] if times else time.time_ns()
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)  # one flat directory is all SQLite needs

    # --- names (volatile until the directory is synced) ----------------------------------

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        name = self._name(path)
        if name == CONTROL:
            return 0  # handle 0: writes to it cut the power (see write)
        node = self.names.get(name)
        if node is None:
            node = _Node(self.next_ino, bytearray(), mode=stat.S_IFREG | stat.S_IMODE(mode))
            self.next_ino += 1
            self.names[name] = node
        return self._open_handle(node)

    def open(self, path: str, flags: int) -> int:
        if path == "/" + CONTROL:
            return 0
        node = self._node(path)
        if flags & os.O_TRUNC:
            self._truncate(node, 0)
        return self._open_handle(node)

    def release(self, path: str, fh: int) -> int:
        self.handles.pop(fh, None)
        return 0

    def unlink(self, path: str) -> int:
        if self.names.pop(self._name(path), None) is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return 0

    def rename(self, old: str, new: str) -> int:
        node = self.names.pop(self._name(old), None)
        if node is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        self.names[self._name(new)] = node
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        tmp = self.store / (NAMES + ".tmp")
        tmp.write_text(json.dumps({name: node.ino for name, node in self.names.items()}))
        tmp.replace(self.store / NAMES)
        return 0

    # --- data (volatile until the file is synced) ----------------------------------------

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return bytes(self._node(path, fh).data[offset : offset + size])

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        if fh == 0 and self._name(path) == CONTROL:
            return self._control(data.decode())
        node = self._node(path, fh)
        end = offset + len(data)
        if end > len(node.data):
            node.data.extend(bytes(end - len(node.data)))
        node.data[offset:end] = data
        node.dirty.update(range(offset // BLOCK, (end - 1) // BLOCK + 1))
        node.mtime_ns = time.time_ns()
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self._truncate(self._node(path, fh), length)
        return 0

    @staticmethod
    def _truncate(node: _Node, length: int) -> None:
        old = len(node.data)
        if length < old:
            del node.data[length:]
        else:
            node.data.extend(bytes(length - old))
        # Blocks between the two sizes change on disk at the next sync (cut or zeroed).
        lo, hi = sorted((length, old))
        node.dirty.update(range(lo // BLOCK, hi // BLOCK + 1))
        node.mtime_ns = time.time_ns()

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        node = self._node(path, fh)
        if self.failing_fsyncs:
            # Linux after a write-back error: the pages are clean now, never written.
            self.failing_fsyncs -= 1
            node.dirty.clear()
            raise mfusepy.FuseOSError(errno.EIO)
        self._write_back(node, sorted(node.dirty), len(node.data))
        node.dirty.clear()
        return 0

    def _write_back(
        self, node: _Node, blocks: list[int], size: int | None, *, sectors: Sequence[int] = ()
    ) -> None:
        """Write ``blocks`` and ``sectors`` of ``node`` to its disk file, then set its size
        (if given)."""
        fd = os.open(self.store / f"ino-{node.ino}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for unit, numbers in ((BLOCK, blocks), (SECTOR, sectors)):
                for number in numbers:
                    chunk = node.data[number * unit : (number + 1) * unit]
                    if chunk:
                        os.pwrite(fd, chunk, number * unit)
            if size is not None:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def _control(self, order: str) -> int:
        fields = dict(item.split("=", 1) for item in order.split())
        if "eio" in fields:
            self.failing_fsyncs = int(fields["eio"])
            return len(order)
        self._cut(fields)
        return 0  # not reached

    def _cut(self, fields: dict[str, str]) -> None:
        """The power cut with write-back: a random share of the unsynced blocks (or
        sectors) reaches the disk, and with ``meta=1`` every size and name too; then the
        process ends without answering (as a machine that lost power)."""
        keep, rng = float(fields["keep"]), random.Random(int(fields["seed"]))
        by_sector, meta = fields.get("sector") == "1", fields.get("meta") == "1"
        for node in {id(n): n for n in [*self.names.values(), *self.handles.values()]}.values():
            size = len(node.data) if meta else None
            if by_sector:
                per_block = BLOCK // SECTOR
                sectors = [
                    b * per_block + i
                    for b in sorted(node.dirty)
                    for i in range(per_block)
                    if rng.random() < keep
                ]
                kept: list[int] = []
            else:
                sectors = []
                kept = [b for b in sorted(node.dirty) if rng.random() < keep]
            if kept or sectors or size is not None:
                self._write_back(node, kept, size, sectors=sectors)
        if meta:
            self.fsyncdir("/", 0, 0)
        os._exit(0)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: lazyfs.py STORE MOUNTPOINT")
    store, mountpoint = Path(argv[0]), argv[1]
    # nothreads: one request at a time, so the state needs no lock; foreground: the
    # caller's SIGKILL of this process is the power cut.
    mfusepy.FUSE(LazyFs(store), mountpoint, foreground=True, nothreads=True, fsname="lazyfs")


if __name__ == "__main__":
    main(sys.argv[1:])
