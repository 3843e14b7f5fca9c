"""The sabotage check's producer: enqueues jobs one at a time, without pause, on each of
``FILES`` SQLite files in ``DIR`` at once (``jobs-<i>.db``), journaling each enqueue that
returned in ``POWERLOSS_JOURNAL_DIR/file-<i>/``; job numbers start after ``START``, so a
row never passes for another run's job. Runs until killed (the power cut).

    python many_files.py DIR FILES START

Each file has its own connection and WAL, so at a cut each file's last flush is an
independent chance to catch a queue that skips some flushes.
"""

import asyncio
import os
import sys
from pathlib import Path

import sabotage  # noqa: F401 - the point of this producer
from usvc_core import EnqueueRequest
from usvc_core.errors import QueueError
from usvc_sqlite import SqliteQueue

MICROSERVICE = "powerloss"


async def produce(path: Path, journal_dir: Path, start: int) -> None:
    os.makedirs(journal_dir, exist_ok=True)
    log = journal_dir / f"producer-{os.getpid()}.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    queue = SqliteQueue(path, durability="full", busy_timeout=2)
    await queue.open()
    n = start
    while True:
        n += 1
        request = EnqueueRequest(payload={"action": "work", "n": n}, microservice=MICROSERVICE)
        try:
            job = await queue.enqueue(request)
        except QueueError:
            await asyncio.sleep(0.01)
            continue
        os.write(fd, f"E {job.id} {n}\n".encode())


async def main(directory: Path, files: int, start: int) -> None:
    journal = Path(os.environ["POWERLOSS_JOURNAL_DIR"])
    await asyncio.gather(
        *(produce(directory / f"jobs-{i}.db", journal / f"file-{i}", start) for i in range(files))
    )


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
