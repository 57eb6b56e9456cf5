"""index_builder against a hostile collection (tests/hostile.py): bad files are skipped with a reason each,
never fatal, never decoded past the size limit, never blocking; two builders on one folder are locked out."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageFile

from demo_core.errors import ImageError, IndexBusy
from demo_core.images import header_size, load_image
from demo_core.search.builder import build_index, scan, writer_lock
from tests.conftest import EXAMPLES, ROOT
from tests.hostile import make_corpus, png_bytes

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the 144 MP PNG, on purpose


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "index_builder"), *map(str, args), "--model", "mini-clip"],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture
def no_decoding(monkeypatch):
    """Any pixel decoding fails the test."""
    def load(self):
        raise AssertionError(f"decoded a {self.size} image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_header_size_reads_only_the_header(no_decoding):
    """Defects 1 and 2: the builder's header read used to decode a whole PNG (getexif) outside any try."""
    truncated = (EXAMPLES / "cat.png").read_bytes()[:6590]
    assert header_size(truncated) == (224, 224)  # a damaged PNG: its size is in the header
    assert header_size(png_bytes(12000, 12000)) == (12000, 12000)  # a valid 144-megapixel PNG: not decoded


def test_a_large_valid_png_is_refused_before_decoding(no_decoding):
    with pytest.raises(ImageError, match="12000×12000 \\(144 megapixels\\)"):
        load_image(png_bytes(12000, 12000))
    with pytest.raises(ImageError, match="1600 megapixels"):
        header_size(png_bytes(40000, 40000, pixels=False))


def test_scan_skips_what_is_not_a_readable_image_file(tmp_path):
    """Defects 3 and 4: a FIFO named fifo.jpg blocked the build forever; a name that is not UTF-8 crashed it
    (and is now kept: a Latin-1 name is still a photo)."""
    corpus = make_corpus(tmp_path / "c")
    files, skipped = scan(corpus.root)
    reasons = dict(skipped)
    assert "named pipe" in reasons["fifo.jpg"] and "the file is empty" in reasons["empty.png"]
    assert "fifo.jpg" not in {f.rel for f in files}
    assert os.fsdecode(b"caf\xe9 \xff.png") in {f.rel for f in files}


def test_build_over_the_hostile_corpus(tmp_path, bundled_clip):
    corpus = make_corpus(tmp_path / "c")
    report = build_index(corpus.root, tmp_path / "idx", bundled_clip, batch_size=4, workers=2)
    assert dict(report.skipped).keys() == corpus.bad.keys()
    for rel, reason in report.skipped:
        assert corpus.bad[rel] in reason, rel
    assert report.indexed + report.reused == report.total == len(corpus.good)


def test_cli_over_the_hostile_corpus(tmp_path):
    """Exit 0, one `skipped` line per bad file with its reason, every good image indexed, no traceback;
    in seconds (the timeout catches a hang, e.g. reading a FIFO)."""
    corpus = make_corpus(tmp_path / "c")
    t0 = time.time()
    done = _cli(corpus.root, "--out", tmp_path / "idx", timeout=120)
    seconds = time.time() - t0
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "Traceback" not in out and "Exception ignored" not in out and "Warning" not in out
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == len(corpus.bad), skipped
    for rel, reason in corpus.bad.items():
        lines = [line for line in skipped if line.startswith(f"skipped {rel}: ")]
        assert len(lines) == 1 and reason in lines[0], (rel, lines)
    noise = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(
        ("skipped ", "model: ", "embedding"))]
    assert not noise, noise
    assert f"index now holds {len(corpus.good)} images" in done.stdout
    print(f"hostile corpus: {len(corpus.good)} good, {len(corpus.bad)} bad files, CLI {seconds:.1f} s")


@pytest.mark.slow  # a subprocess CLI run (the fast set keeps test_cli_over_the_hostile_corpus for the wiring)
def test_a_second_builder_on_the_same_folder_is_refused_with_the_pid(tmp_path, bundled_clip):
    """Defect 5: two builders on one --out used to collide (an IntegrityError traceback, wrong counts)."""
    out = tmp_path / "idx"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
         "from demo_core.search.builder import writer_lock\n"
         "with writer_lock(sys.argv[2]):\n    print('locked', flush=True); time.sleep(120)", str(ROOT), str(out)],
        stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = _cli(EXAMPLES, "--out", out)
        assert second.returncode == 4, second.stderr
        assert second.stderr.strip() == f"error: another index_builder is writing {out.resolve()} (pid {holder.pid}); " \
                                        "wait for it to finish, or use another --out."
        with pytest.raises(IndexBusy, match=f"pid {holder.pid}"):
            build_index(EXAMPLES, out, bundled_clip)
    finally:
        holder.kill()
        holder.wait()
    report = build_index(EXAMPLES, out, bundled_clip)  # the lock went with the process that held it
    assert report.total == len(list(EXAMPLES.rglob("*.png")))
    with writer_lock(out), writer_lock(out):  # the holder may take it again (the CLI does)
        pass


@pytest.mark.slow
def test_two_builders_started_together(tmp_path):
    """The issue's own reproduction: both at once on one --out; one builds, the other stops with exit 4."""
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(40):
        (root / f"img{i:02d}.png").write_bytes(png_bytes(64 + i, 64))
    cmd = [sys.executable, str(ROOT / "index_builder"), str(root), "--out", str(tmp_path / "idx"), "--model",
           "mini-clip"]
    first = subprocess.Popen(cmd + ["--batch-size", "2", "--workers", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    lock, deadline = tmp_path / "idx" / ".lock", time.time() + 120
    while time.time() < deadline and first.poll() is None:  # until the first one holds the folder
        if lock.exists() and lock.read_text().strip() == str(first.pid):
            break
        time.sleep(0.02)
    assert first.poll() is None, "the first builder ended before the second could meet its lock"
    second = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=180)
    stdout, stderr = first.communicate(timeout=180)
    assert second.returncode == 4 and "another index_builder is writing" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr + stderr
    assert first.returncode == 0 and "index now holds 40 images" in stdout


@pytest.mark.slow
def test_ctrl_c_ends_the_build_cleanly(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1000):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / f"img{i:04d}.png")
    os.mkfifo(root / "fifo.jpg")
    out = tmp_path / "idx"
    cmd = [sys.executable, str(ROOT / "index_builder"), str(root), "--out", str(out), "--model", "mini-clip",
           "--batch-size", "2", "--workers", "1"]
    # Ctrl-C's default action, whatever this process inherited: a shell that starts the test suite in the
    # background (`make test &`) ignores SIGINT, the child would inherit that and never see the Ctrl-C
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # until some batches are committed
        if (out / "meta.sqlite").exists() and (out / "meta.sqlite").stat().st_size > 20_000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the build ended before Ctrl-C could reach it"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "interrupted: what was embedded so far is saved" in stderr
    again = subprocess.run(cmd[:-4], capture_output=True, text=True, env=ENV, timeout=300)  # run again to finish
    assert again.returncode == 0 and "index now holds 1000 images" in again.stdout, again.stderr
