"""Run by test_queue.py in its own process: a worker gets SIGTERM at the worst moment, while a
log handler is formatting its line (inside logging's ``except Exception``), and must still stop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from core import tasks
from core.queue import build_worker, enqueue
from core.settings import Settings


class SignalDuringEmit(logging.StreamHandler):  # type: ignore[type-arg]
    fired = False

    def format(self, record: logging.LogRecord) -> str:
        if not SignalDuringEmit.fired and "token='1'" in record.getMessage():
            SignalDuringEmit.fired = True
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # Python runs the signal handler here, inside emit's try
        return super().format(record)


def main() -> None:
    settings = Settings(data_dir=sys.argv[1], redis_url=sys.argv[2], log_json=False)
    for i in range(3):
        enqueue(tasks.ping, settings=settings, token=str(i))
    logging.getLogger("rq.worker").addHandler(SignalDuringEmit())
    started = time.monotonic()
    build_worker(settings).work(with_scheduler=True, logging_level="INFO")
    print(f"stopped after {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
