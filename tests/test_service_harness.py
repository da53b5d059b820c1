"""Runs the real service for the service tests: `python -m service` under uvicorn in a subprocess, on a free
loopback port, with toy models and its own data folder. (No tests here: helpers shared by test_service*.py.)"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.scenes import toy_model

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_toy_models(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    toy_model(folder / "toy-rgbn.onnx")
    toy_model(folder / "toy-rgb.onnx", bands=("R", "G", "B"), name="toy-rgb")
    (folder / "toy-rgbn.md").write_text("# toy-rgbn\n\nFinds bright discs.\n")
    return folder


class ServiceProcess:
    """One server process; start() again after stop() to restart it on the same data folder."""

    def __init__(self, data_dir: Path, models_dir: Path, log_path: Path, **settings: str):
        self.data_dir = data_dir
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DEADTREE_")}
        self.env.update({"DEADTREE_DATA_DIR": str(data_dir), "DEADTREE_MODELS": str(models_dir),
                         "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
        self.env.update({f"DEADTREE_{k.upper()}": str(v) for k, v in settings.items()})
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServiceProcess":
        self.port = free_port()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited at start:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop(hard=True)
        raise RuntimeError(f"the service did not start in {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self, hard: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def wait_for_job(client: httpx.Client, job_id: str, states=("succeeded", "failed"), timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status.get("state") in states or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def upload(path: Path, name: str | None = None, **fields) -> dict:
    """httpx `files` + `data` for one scene and its options."""
    return {"files": {"file": (name or path.name, path.read_bytes(), "image/tiff")},
            "data": {k: str(v) for k, v in fields.items()}}
