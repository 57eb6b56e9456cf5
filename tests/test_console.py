"""What a user who types `make run` sees in the console: the app's own lines and real warnings only."""
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.launched import free_port

NOISE = ("accelerate", "Loading pipeline components", "should be kept in float32", "Will cache examples")


@pytest.mark.slow
def test_starting_the_app_prints_only_its_own_lines_and_real_warnings(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DEMO_CACHE": str(tmp_path / "cache"),
           "GRADIO_EXAMPLES_CACHE": str(tmp_path / "examples"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(free_port())], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.time() + 180
    try:
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "unCLIP prior" in line:  # the last model the background loader loads
                break
    finally:
        proc.terminate()
        proc.wait(30)
    text = "\n".join(lines)
    assert "unCLIP prior" in text, text  # it started and loaded everything
    assert "Running on local URL" in text
    for noise in NOISE:
        assert noise not in text, f"console shows {noise!r}:\n{text}"


def _start(tmp_path, port):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DEMO_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path),
           "GRADIO_EXAMPLES_CACHE": str(tmp_path / "examples"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.time() + 180
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "unCLIP prior" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("the app did not start:\n" + "\n".join(lines))


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_during_a_sampling_run_exits_0_at_once_and_cleanly(tmp_path, sig):
    """Spaces stops an app with SIGTERM; a user presses Ctrl-C. Mid-run, the app exits 0 within seconds,
    without a C++ abort, and removes its temporary files."""
    import signal

    from gradio_client import Client

    from ui.diffusion import CLIPPED

    port = free_port()
    proc, lines = _start(tmp_path, port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        job = client.submit("", "emoji-ddpm", "DDPM", 50, 0.0, 0, 4, CLIPPED, api_name="/sample")  # 1,000 steps
        deadline = time.time() + 60
        while time.time() < deadline and job.status().code.name not in ("PROCESSING", "ITERATING"):
            time.sleep(0.2)
        time.sleep(1.0)  # inside torch now
        assert list(tmp_path.glob("clip-lab-files-*")), "the run's file folder exists while it runs"
        t0 = time.time()
        proc.send_signal(getattr(signal, sig))
        rc = proc.wait(15)
        took = time.time() - t0
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0 and took < 10, (rc, took, rest)
    assert "terminate called" not in rest and "Traceback" not in rest, rest
    assert not list(tmp_path.glob("clip-lab-files-*"))  # the engine's files are gone
