"""Launching a sweep's runs (benchmark/commands/sweep.py): each in a process group of its own, stoppable as one.

``launch`` runs one command and returns its exit status. The run gets a process group of its own, so
that the runner alone decides what reaches it: ``forward_signal`` sends a signal to the group of every
live run (the run and its DDP ranks and loader workers), and ``STOP`` keeps further runs from starting.
A command that is this interpreter's ``-m benchmark ARGS`` may instead run ``benchmark.cli.main(ARGS)``
in a process forked from a ``multiprocessing`` forkserver that imported ``PRELOAD`` once (``preloaded``):
a fresh interpreter spends seconds importing Lightning, which a minute-long CPU run (the demo's) should
not pay each time. The forked run gets what a launched one gets: its own session, the environment
given (torch's threads set from ``OMP_NUM_THREADS``, which the server's OpenMP read at import), its
output in the log file, and the exit status of ``main``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import subprocess
import sys
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

_CHILDREN: set[subprocess.Popen | BaseProcess] = set()
"""The runs being launched now; a signal to the runner is forwarded to each one's process group."""
_LOCK = threading.Lock()
STOP = threading.Event()
"""Set when the runner was told to stop (SIGTERM/SIGINT): no further run starts."""
PRELOAD = ("benchmark.train",)
"""What the server that forks preloaded runs imports once (``launch``): the training code and Lightning."""


def launch(command: list[str], env: dict[str, str], output: Path | None = None, *, preloaded: bool = False) -> int:
    """Run one sweep command to completion; its exit status. ``output``: a log file that gets the run's
    stdout and stderr (appended), else they are the runner's.

    The run gets a process group of its own (``start_new_session``), so that the runner alone decides
    what reaches it (``forward_signal``) and waits for it, never orphaning it. ``preloaded``: a command
    that is ``<this interpreter> -m benchmark ARGS`` runs ``benchmark.cli.main(ARGS)`` in a process
    forked from the server that imported ``PRELOAD`` (see the module docstring); other commands start
    as they are."""
    argv = benchmark_args(command) if preloaded else None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as files:
        stream = files.enter_context(output.open("ab")) if output is not None and argv is None else None
        with _LOCK:
            if STOP.is_set():
                return -signal.SIGTERM
            child: subprocess.Popen | BaseProcess
            if argv is None:
                child = subprocess.Popen(command, env=env, start_new_session=True, stdout=stream,
                                         stderr=None if stream is None else subprocess.STDOUT)
            else:
                process = _forkserver().Process(target=_run_preloaded, args=(argv, env, output))
                process.start()
                child = process
            _CHILDREN.add(child)
        try:
            if isinstance(child, subprocess.Popen):
                return child.wait()
            child.join()
            return -1 if child.exitcode is None else child.exitcode
        finally:
            with _LOCK:
                _CHILDREN.discard(child)


def benchmark_args(command: list[str]) -> list[str] | None:
    """``ARGS`` when ``command`` is ``<this interpreter> -m benchmark ARGS``, else None."""
    found = shutil.which(command[0]) if command else None
    if found and os.path.abspath(found) == os.path.abspath(sys.executable) and command[1:3] == ["-m", "benchmark"]:
        return command[3:]
    return None


def _forkserver() -> Any:
    """The forkserver context whose server imports ``PRELOAD`` once (started on its first use)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def _run_preloaded(argv: list[str], env: dict[str, str], output: Path | None) -> None:
    """In the forked process: become ``python -m benchmark ARGS`` with ``env``, output into ``output``."""
    os.setsid()  # a process group of its own, as start_new_session gives a launched command
    os.environ.clear()
    os.environ.update(env)
    if output is not None:
        log_file = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        os.dup2(log_file, 1)
        os.dup2(log_file, 2)
        os.close(log_file)
    if env.get("OMP_NUM_THREADS"):  # the server's OpenMP read its environment at import, not this one
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    from benchmark.cli import main

    sys.exit(main(argv))


def forward_signal(signum: int, kill: bool) -> None:
    """Send ``signum`` (SIGKILL when ``kill``) to the process group of every live run."""
    sent = signal.SIGKILL if kill else signum
    with _LOCK:
        for child in _CHILDREN:
            if child.pid is None:
                continue
            try:
                os.killpg(child.pid, sent)
            except (ProcessLookupError, PermissionError):  # it has just exited, or (forked) not yet called setsid
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(child.pid, sent)


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_preload_server() -> None:
    """Start the forkserver (importing ``PRELOAD``) now rather than when the first preloaded run asks for it."""
    _forkserver()
    multiprocessing.forkserver.ensure_running()
