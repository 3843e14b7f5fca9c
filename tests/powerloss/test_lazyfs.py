"""The lazy filesystem really forgets: without this, the power-loss suite could pass by
losing nothing. Files, names and SQLite transactions, each synced or not, across a cut."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.powerloss import harness
from tests.powerloss.harness import LazyMount

pytestmark = pytest.mark.slow


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _power_cycle(mount: LazyMount) -> None:
    mount.cut()
    mount.start()


def test_unsynced_data_is_lost_and_synced_data_kept(lazy_mount: LazyMount) -> None:
    mnt = lazy_mount.mnt
    (mnt / "synced").write_bytes(b"s" * 10_000)
    _fsync(mnt / "synced")
    (mnt / "unsynced").write_bytes(b"u" * 10_000)
    (mnt / "datasynced").write_bytes(b"d" * 5000)
    fd = os.open(mnt / "datasynced", os.O_WRONLY)
    os.fdatasync(fd)
    os.close(fd)
    _fsync(mnt)  # every name so far is on disk
    with (mnt / "synced").open("r+b") as f:  # changes after the last sync: lost
        f.seek(100)
        f.write(b"X" * 50)
        f.seek(0, os.SEEK_END)
        f.write(b"appended")
    os.truncate(mnt / "datasynced", 10)
    # Everything is readable before the cut, from memory.
    assert (mnt / "synced").read_bytes()[100:150] == b"X" * 50
    assert (mnt / "unsynced").read_bytes() == b"u" * 10_000
    assert (mnt / "datasynced").stat().st_size == 10

    _power_cycle(lazy_mount)

    assert (mnt / "synced").read_bytes() == b"s" * 10_000
    assert (mnt / "unsynced").read_bytes() == b""  # its name was synced, its data never
    assert (mnt / "datasynced").read_bytes() == b"d" * 5000


def test_names_need_a_directory_sync(lazy_mount: LazyMount) -> None:
    mnt = lazy_mount.mnt
    (mnt / "old").write_bytes(b"old")
    _fsync(mnt / "old")
    _fsync(mnt)
    (mnt / "new").write_bytes(b"new")
    _fsync(mnt / "new")  # its data is synced, its name is not
    os.rename(mnt / "old", mnt / "renamed")
    assert sorted(os.listdir(mnt)) == ["new", "renamed"]

    _power_cycle(lazy_mount)

    assert sorted(os.listdir(mnt)) == ["old"]
    assert (mnt / "old").read_bytes() == b"old"

    (mnt / "new").write_bytes(b"new")
    _fsync(mnt / "new")
    (mnt / "old").unlink()
    _fsync(mnt)

    _power_cycle(lazy_mount)

    assert sorted(os.listdir(mnt)) == ["new"]
    assert (mnt / "new").read_bytes() == b"new"


_SQLITE_WRITER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # each commit fsyncs the WAL
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES ('full')")
    conn.execute("PRAGMA synchronous=NORMAL")  # commits wait for no fsync
    conn.execute("INSERT INTO t VALUES ('normal')")
    print("committed", flush=True)
    time.sleep(60)
    """
)


def test_a_commit_that_was_not_synced_is_lost(lazy_mount: LazyMount) -> None:
    """SQLite itself on the filesystem: a transaction committed with synchronous=FULL
    survives the cut, the next one (NORMAL, no fsync) does not."""
    db = lazy_mount.mnt / "t.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _SQLITE_WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "committed"
        conn = sqlite3.connect(db)
        assert [v for (v,) in conn.execute("SELECT v FROM t")] == ["full", "normal"]
        conn.close()
        lazy_mount.cut()
    finally:
        writer.kill()
        writer.wait(10)
        if writer.stdout is not None:
            writer.stdout.close()
    lazy_mount.start()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert [v for (v,) in conn.execute("SELECT v FROM t")] == ["full"]
    finally:
        conn.close()


def test_a_cut_with_write_back_keeps_some_unsynced_blocks(lazy_mount: LazyMount) -> None:
    """The second kind of cut: the page cache wrote back a random share of the dirty
    blocks. Each block comes back either as written or as last synced, never torn."""
    mnt = lazy_mount.mnt
    blocks = 64
    (mnt / "f").write_bytes(b"\0" * 4096 * blocks)
    _fsync(mnt / "f")
    _fsync(mnt)
    with (mnt / "f").open("r+b") as f:
        for i in range(blocks):
            f.seek(i * 4096)
            f.write(bytes([i + 1]) * 4096)

    lazy_mount.cut(keep=0.5, seed=7)
    lazy_mount.start()

    data = (mnt / "f").read_bytes()
    assert len(data) == 4096 * blocks
    kept = 0
    for i in range(blocks):
        block = data[i * 4096 : (i + 1) * 4096]
        assert block in (b"\0" * 4096, bytes([i + 1]) * 4096), f"block {i} is torn"
        kept += block != b"\0" * 4096
    assert 0 < kept < blocks


def test_missing_fuse_pieces_give_a_reason_to_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where FUSE cannot run the suite skips, saying what is missing and how to add it."""
    monkeypatch.setattr(harness.shutil, "which", lambda name: None)
    reason = harness.fuse_unavailable()
    if Path("/dev/fuse").exists() and os.access("/dev/fuse", os.R_OK | os.W_OK):
        assert reason == "fusermount3 is missing (apt-get install fuse3)"
    else:
        assert reason is not None
        assert "/dev/fuse" in reason


# --- the harsher states (issue 24 item 6) ------------------------------------------------------


def test_metadata_reaches_the_disk_without_the_data(lazy_mount: LazyMount) -> None:
    """``meta``: a grown file keeps its new size with zeros where the unsynced data was; a
    rename and a new name reach the disk though the directory was never synced."""
    mnt = lazy_mount.mnt
    (mnt / "grown").write_bytes(b"g" * 4096)
    _fsync(mnt / "grown")
    _fsync(mnt)
    with (mnt / "grown").open("ab") as f:
        f.write(b"n" * 8192)
    (mnt / "grown").rename(mnt / "renamed")
    (mnt / "created").write_bytes(b"c" * 100)
    lazy_mount.cut(keep=0.0, seed=1, meta=True)
    lazy_mount.start()
    assert sorted(p.name for p in mnt.iterdir()) == ["created", "renamed"]
    assert (mnt / "renamed").read_bytes() == b"g" * 4096 + bytes(8192)
    assert (mnt / "created").read_bytes() == bytes(100)


def test_a_block_tears_at_sector_boundaries(lazy_mount: LazyMount) -> None:
    """``sector``: one unsynced 4 KiB block reaches the disk in part: some of its 512-byte
    sectors new, the others old, never a sector half written."""
    mnt = lazy_mount.mnt
    (mnt / "f").write_bytes(b"o" * 4096)
    _fsync(mnt / "f")
    _fsync(mnt)
    with (mnt / "f").open("r+b") as f:
        f.write(b"N" * 4096)
    lazy_mount.cut(keep=0.5, seed=7, sector=True)
    lazy_mount.start()
    data = (mnt / "f").read_bytes()
    sectors = {data[i : i + 512] for i in range(0, 4096, 512)}
    assert sectors == {b"o" * 512, b"N" * 512}  # torn: both, sector by sector


def test_a_failed_fsync_drops_the_data_and_the_next_one_succeeds(lazy_mount: LazyMount) -> None:
    """``eio``: the fsync fails, the data still reads back until the cut, then it is gone;
    a second fsync reports success though nothing was written (fsyncgate)."""
    mnt = lazy_mount.mnt
    (mnt / "f").write_bytes(b"o" * 100)
    _fsync(mnt / "f")
    _fsync(mnt)
    with (mnt / "f").open("r+b") as f:
        f.write(b"N" * 100)
    lazy_mount.fail_fsyncs(1)
    with pytest.raises(OSError) as info:
        _fsync(mnt / "f")
    assert info.value.errno == 5  # EIO
    assert (mnt / "f").read_bytes() == b"N" * 100
    _fsync(mnt / "f")  # succeeds: the error was reported once
    _power_cycle(lazy_mount)
    assert (mnt / "f").read_bytes() == b"o" * 100
