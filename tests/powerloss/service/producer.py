"""The producer of the power-loss suite: enqueues jobs ``START`` to ``START + COUNT - 1`` on
the SQLite file ``DB`` one to four at a time, journaling each job whose enqueue returned.

    python producer.py DB DURABILITY START COUNT SEED

A failed enqueue (the filesystem went away, a lock timed out) is not journaled, and the
producer goes on with the next jobs; it exits once it has tried them all.
"""

import asyncio
import random
import sys

import sabotage  # noqa: F401 - only with POWERLOSS_SKIP_FSYNC=1
from journal import Journal
from usvc_core import EnqueueRequest
from usvc_core.errors import QueueError
from usvc_sqlite import SqliteQueue

MICROSERVICE = "powerloss"


def request(n: int, rng: random.Random) -> EnqueueRequest:
    outcome = {0: "fail", 1: "retry"}.get(n % 10, "complete")
    return EnqueueRequest(
        payload={"action": "work", "n": n, "ms": rng.randrange(0, 20), "outcome": outcome},
        microservice=MICROSERVICE,
        max_attempts=1000,  # every cut may take an attempt; none may run out
    )


async def produce(db: str, durability: str, start: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    journal = Journal("producer")
    queue = SqliteQueue(db, durability=durability, busy_timeout=2)
    await queue.open()
    n = start
    while n < start + count:
        size = min(rng.randint(1, 4), start + count - n)
        batch = [request(i, rng) for i in range(n, n + size)]
        n += size
        try:
            if size == 1:
                jobs = [await queue.enqueue(batch[0])]
            else:
                jobs = await queue.enqueue_many(batch)
        except QueueError:
            await asyncio.sleep(0.05)
            continue
        for job, sent in zip(jobs, batch, strict=True):
            journal.write("E", job.id, sent.payload["n"])
        await asyncio.sleep(rng.random() * 0.01)
    await queue.close()


if __name__ == "__main__":
    db, durability, start, count, seed = sys.argv[1:]
    asyncio.run(produce(db, durability, int(start), int(count), int(seed)))
