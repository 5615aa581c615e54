"""Starting N ranks of a distributed program the way torchrun does (its environment variables),
without the agent's start-up time, with each rank's process at hand (for signals)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], n: int = 2) -> list[subprocess.Popen]:
    """`python ARGV...` as ranks 0..n-1 of one gloo group, one thread each."""
    port = free_port()
    procs = []
    for rank in range(n):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n)}
        procs.append(subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs) -> tuple[list[int], list[tuple[str, str]]]:
    try:
        outputs = [p.communicate(timeout=600) for p in procs]  # a hang would time out here
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs], outputs


def run_ranks(argv: list[str], n: int = 2) -> list[tuple[str, str]]:
    """Launch, wait, and insist that every rank exited 0."""
    codes, outputs = finish(launch(argv, n))
    assert codes == [0] * n, "\n".join(err[-3000:] for _, err in outputs)
    return outputs
