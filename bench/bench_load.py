"""The app under load: N concurrent clients, each a gradio_client that classifies and searches in turn and
downloads every search's thumbnails, as a browser would; the older serving (DEMO_LEGACY_QUEUE=1) against today's, in one run.

    python bench/bench_load.py [--clients 1 8 32] [--requests 20] [--configs before after] [--processes 4]
                               [--ssl-verify] [--out bench/load.json]

Each configuration is the real app (`python app.py --clip-model mini-clip`) in its own process, with
Gradio's profiler on (GRADIO_PROFILING=1), so the server's share of every request is split into queue
wait, pre-processing, the handler and post-processing. *before* sets DEMO_LEGACY_QUEUE=1, which
restores the old serving: every event limited to 2 at a time (default_concurrency_limit=2) and search
thumbnails copied into Gradio's cache (hashed) on every answer. *after* is the app as it is.

The clients are threads spread over `--processes` processes, so that the measuring side is not held
to one core by one interpreter lock, and they skip gradio_client's per-call certificate loading on
this plain-http connection (`--ssl-verify` puts it back: with one process that is how a single script
of 32 clients measures, and there half the clients' CPU goes to building SSL contexts).

Per configuration and client count: the clients start together (a barrier), each sends `--requests`
requests alternating classify (the cat example, 5 labels, one template: label embeddings cached after
the first) and search (one of six queries, 12 results) and downloads the 12 thumbnails of each search;
a request's latency runs from the call to its last thumbnail. Reported: requests/s over the wall time,
p50/p95 latency overall and per endpoint, errors, the server's p50 per phase per endpoint (queue wait,
pre-processing, handler, post-processing), the CPU time the app and the clients used per request, and
the CPU that everything else on the machine used meanwhile (measure only when that is near 0).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _report import report  # noqa: E402  (bench/ is on sys.path when run as a script)

QUERIES = ["cat", "dog", "a red car", "tree", "astronaut", "coffee cup"]
LABELS = "cat, dog, car, tree, pizza"
CONFIGS = {"before": {"DEMO_LEGACY_QUEUE": "1"}, "after": {}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(config: str, log: Path) -> tuple[subprocess.Popen, str]:
    """The app in its own process, its models loaded and every query warmed up once."""
    from gradio_client import Client, handle_file

    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_PROFILING": "1",
           **CONFIGS[config]}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--clip-model", "mini-clip", "--device", "cpu",
                                 "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    while True:
        try:
            if httpx.get(f"{url}config", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the app did not start; see {log}")
        time.sleep(0.5)
    client = Client(url, verbose=False, download_files=False)
    client.predict(handle_file(str(ROOT / "assets/examples/cat.png")), LABELS, "a photo of a {}", True,
                   api_name="/classify")
    for q in QUERIES:
        client.predict(q, "bundled gallery", 12, api_name="/search")
    return proc, url


def client_loop(url: str, index: int, requests: int, ready: threading.Barrier, go: threading.Event,
                results: list, ssl_verify: bool) -> None:
    """One client: `requests` calls alternating classify and search, thumbnails downloaded."""
    from gradio_client import Client, handle_file

    # Plain http to this machine: no TLS, so by default no certificate store is loaded (gradio_client
    # builds a new httpx client, and with certificate checks on a new SSL context, for every call).
    client = Client(url, verbose=False, download_files=False, ssl_verify=ssl_verify)
    cat = handle_file(str(ROOT / "assets/examples/cat.png"))
    web = httpx.Client(base_url=url, timeout=120)
    ready.wait()
    go.wait()
    for i in range(requests):
        kind = "classify" if (i + index) % 2 == 0 else "search"
        t0 = time.perf_counter()
        download_s, ok, step = 0.0, True, "call"
        try:
            if kind == "classify":
                client.predict(cat, LABELS, "a photo of a {}", True, api_name="/classify")
            else:
                items = client.predict(QUERIES[(i + index) % len(QUERIES)], "bundled gallery", 12,
                                       api_name="/search")[0]
                step, t1 = "thumbnails", time.perf_counter()
                for item in items:
                    fetch(web, item["image"]["url"])
                download_s = time.perf_counter() - t1
        except Exception as e:  # noqa: BLE001 - counted and reported, the run goes on
            ok = False
            print(f"client {index} request {i} ({kind}, {step}): {type(e).__name__}: {e}", file=sys.stderr)
        results.append((kind, time.perf_counter() - t0, download_s, ok))
    web.close()


def fetch(web: httpx.Client, url: str) -> None:
    """GET a thumbnail on a kept-alive connection. Like a browser, a GET on a connection that the server
    closed as idle at that very moment (its keep-alive timeout) is sent again once, on a new one."""
    try:
        web.get(url).raise_for_status()
    except (httpx.ReadError, httpx.RemoteProtocolError):
        web.get(url).raise_for_status()


def client_process(url: str, indexes: list[int], requests: int, start, out, ssl_verify: bool) -> None:
    """A process holding some of the clients, one thread each (several processes, so that the clients'
    own Python work is not held to one core by one interpreter lock). Sends back (results, CPU seconds)."""
    results: list = []
    ready, go = threading.Barrier(len(indexes) + 1), threading.Event()
    threads = [threading.Thread(target=client_loop, args=(url, i, requests, ready, go, results, ssl_verify))
               for i in indexes]
    for t in threads:
        t.start()
    ready.wait()  # this process's clients are connected
    start.wait()  # and every other process's
    cpu0 = time.process_time()
    go.set()
    for t in threads:
        t.join()
    out.put((results, time.process_time() - cpu0))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time all processes on the machine used so far (Linux /proc/stat: user, nice, system, irq, softirq)."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_load(url: str, server_pid: int, clients: int, requests: int, processes: int, ssl_verify: bool = False) -> dict:
    import multiprocessing as mp

    httpx.post(f"{url}gradio_api/profiling/clear", timeout=30)
    ctx = mp.get_context("spawn")
    n_proc = min(processes, clients)
    start, out = ctx.Barrier(n_proc + 1), ctx.Queue()
    procs = [ctx.Process(target=client_process,
                         args=(url, list(range(p, clients, n_proc)), requests, start, out, ssl_verify))
             for p in range(n_proc)]
    for p in procs:
        p.start()
    start.wait()
    t0, server0, machine0 = time.perf_counter(), cpu_seconds(server_pid), machine_cpu_seconds()
    results, client_cpu = [], 0.0
    for _ in procs:
        part, cpu = out.get()
        results += part
        client_cpu += cpu
    wall = time.perf_counter() - t0
    server_cpu, machine_cpu = cpu_seconds(server_pid) - server0, machine_cpu_seconds() - machine0
    for p in procs:
        p.join()
    traces = httpx.get(f"{url}gradio_api/profiling/traces", timeout=60).json()
    done = [r for r in results if r[3]]
    row = {"clients": clients, "requests": len(results), "errors": len(results) - len(done), "wall_s": round(wall, 1),
           "req_per_s": round(len(done) / wall, 2),
           "p50_s": round(pct([r[1] for r in done], 0.5), 3), "p95_s": round(pct([r[1] for r in done], 0.95), 3)}
    for kind in ("classify", "search"):
        lat = [r[1] for r in done if r[0] == kind]
        row[f"{kind}_p50_s"], row[f"{kind}_p95_s"] = round(pct(lat, 0.5), 3), round(pct(lat, 0.95), 3)
        server = [t for t in traces if t["fn_name"] == kind]
        row[f"{kind}_server_p50_ms"] = {phase: round(statistics.median(t[f"{phase}_ms"] for t in server), 1)
                                        for phase in ("queue_wait", "preprocess", "fn_call", "postprocess", "total")
                                        } if server else {}
    row["thumbnails_p50_s"] = round(pct([r[2] for r in done if r[0] == "search"], 0.5), 3)
    # CPU used per second of the run (2.0 = both cores busy) and per request, by the app and by the clients
    row["server_cpu_per_s"], row["clients_cpu_per_s"] = round(server_cpu / wall, 2), round(client_cpu / wall, 2)
    row["server_cpu_ms_per_req"] = round(1000 * server_cpu / max(1, len(done)), 1)
    row["clients_cpu_ms_per_req"] = round(1000 * client_cpu / max(1, len(done)), 1)
    # everything else on the machine meanwhile: near 0 on a quiet machine (the figures mean nothing otherwise)
    row["others_cpu_per_s"] = round(max(0.0, machine_cpu - server_cpu - client_cpu) / wall, 2)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=20, help="requests per client (default 20)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--processes", type=int, default=4, help="client processes, the clients spread over them")
    ap.add_argument("--ssl-verify", action="store_true",
                    help="let gradio_client load the certificate store on every call, as it does by default "
                         "(with --processes 1: the clients as a single script would run them)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for config in args.configs:
        log = Path(f"/tmp/bench-load-{config}.log")
        proc, url = start_app(config, log)
        try:
            for n in args.clients:
                row = {"config": config, **run_load(url, proc.pid, n, args.requests, args.processes, args.ssl_verify)}
                print(row, file=sys.stderr)
                rows.append(row)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    for n in args.clients:
        before = next((r for r in rows if r["config"] == "before" and r["clients"] == n), None)
        after = next((r for r in rows if r["config"] == "after" and r["clients"] == n), None)
        if before and after:
            after["speedup"] = round(after["req_per_s"] / before["req_per_s"], 2)
    report(rows, args.out, model="mini-clip", cpus=os.cpu_count(), client_processes=args.processes,
           ssl_verify=args.ssl_verify,
           command="python bench/bench_load.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
