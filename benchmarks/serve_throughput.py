"""`lmlab serve` under load: continuous batching against the same server running one request at a
time (--max-batch 1), with 1, 4 and 16 concurrent streaming clients, in one run.

    python benchmarks/serve_throughput.py [RUN] [--concurrency 1,4,16] [--requests 32] [--max-tokens 64]
        [--max-seconds 120] [--batch 16] [--dtype auto] [--out benchmarks/results/serve_throughput.json]

Without RUN, a demo-shaped run (configs/demo.toml: 4 layers, d_model 256, context 256) is trained
for a few steps into a temporary directory: throughput does not depend on how well it is trained.
Both servers are real `lmlab serve` processes on free loopback ports, taking turns at each level
(an idle one costs nothing); the clients are threads of this process (on a small machine they
share its cores with the server: the load average before and after is printed).
Per concurrency level a fixed number of requests (prompts of 6-40 characters, temperature 0.8,
top_k 40, seeded) is sent, never more than `--concurrency` at once, and no new one after
`--max-seconds`, so the run always stops by itself. Reported per level: requests/s, generated
tokens/s (from the usage counts), time to first token and the gaps between streamed tokens
(p50/p99), and the server's peak RSS; `speedup` = batched tokens/s / one-at-a-time tokens/s.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["ROMEO:\n", "KING HENRY:\nWhat", "To be, or not", "First Citizen:\nBefore we proceed any further, hear",
           "JULIET:\nO Romeo, Romeo!", "HAMLET:\n", "Now is the winter of our discontent", "MACBETH:\nIs this a"]


def train_demo(out: Path, steps: int) -> None:
    subprocess.run([sys.executable, "-m", "lmlab.cli", "train", "-c", "demo", "-o", str(out),
                    "--set", f"train.max_steps={steps}", "--set", "train.eval_every=0",
                    "--set", f"train.ckpt_every={steps}", "--set", "train.progress=false"],
                   check=True, stdout=subprocess.DEVNULL)


def start_server(run: str, batch: int, dtype: str):
    proc = subprocess.Popen([sys.executable, "-m", "lmlab.cli", "serve", run, "--port", "0", "--max-batch", str(batch),
                             "--dtype", dtype, "--max-queue", "4096"], stderr=subprocess.PIPE, text=True)
    banner = proc.stderr.readline()
    if "serving" not in banner:
        proc.kill()
        raise SystemExit(f"the server did not start: {banner}{proc.stderr.read()}")
    host, port = banner.split("http://")[1].split(" ")[0].rsplit(":", 1)
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its stderr drained
    return proc, host, int(port)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_request(host: str, port: int, body: dict) -> dict:
    """Stream one completion; times of the first token and of every later one."""
    conn = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    stamps, tokens = [], 0
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        if '"usage":{' in line:  # only the last chunk is parsed: the client shares the server's CPUs
            tokens = json.loads(line[6:])["usage"]["completion_tokens"]
        elif '"text":""' not in line:
            stamps.append(time.perf_counter())
    conn.close()
    return {"ttft": stamps[0] - t0 if stamps else None, "gaps": [b - a for a, b in zip(stamps, stamps[1:])],
            "tokens": tokens}


def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1e3, 2)


def load_level(host, port, concurrency, n_requests, max_tokens, max_seconds) -> dict:
    bodies = [{"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0.8, "top_k": 40,
               "seed": i, "stream": True, "stream_options": {"include_usage": True}} for i in range(n_requests)]
    results, sent = [], 0
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        running = set()
        while (sent < n_requests and time.perf_counter() - start < max_seconds) or running:
            while len(running) < concurrency and sent < n_requests and time.perf_counter() - start < max_seconds:
                running.add(pool.submit(one_request, host, port, bodies[sent]))
                sent += 1
            done = {f for f in running if f.done()}
            for f in done:
                results.append(f.result())
            running -= done
            time.sleep(0.002)
    wall = time.perf_counter() - start
    tokens = sum(r["tokens"] for r in results)
    gaps = [g for r in results for g in r["gaps"]]
    ttfts = [r["ttft"] for r in results if r["ttft"] is not None]
    return {"concurrency": concurrency, "requests": len(results), "seconds": round(wall, 2),
            "requests_per_s": round(len(results) / wall, 3), "tokens_per_s": round(tokens / wall, 1),
            "ttft_ms_p50": pct(ttfts, 0.5), "ttft_ms_p99": pct(ttfts, 0.99),
            "inter_token_ms_p50": pct(gaps, 0.5), "inter_token_ms_p99": pct(gaps, 0.99)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-seconds", type=float, default=120, help="no new request after this long, per level")
    ap.add_argument("--batch", type=int, default=16, help="--max-batch of the batched server")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_throughput.json"))
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = str(Path(tmp) / "demo")
            train_demo(Path(run), args.train_steps)
        load_before = os.getloadavg()
        report = {"benchmark": "serve_throughput", "run": args.run or f"configs/demo.toml, {args.train_steps} steps",
                  "dtype": args.dtype, "max_tokens": args.max_tokens, "requests_per_level": args.requests,
                  "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                  "load_avg_1min_before": round(load_before[0], 2), "servers": {}}
        servers = {"one_at_a_time": 1, "batched": args.batch}
        procs = {label: start_server(run, batch, args.dtype) for label, batch in servers.items()}
        try:
            rows = {label: [] for label in servers}
            for label, (_, host, port) in procs.items():
                one_request(host, port, {"prompt": "warm", "max_tokens": 4, "stream": True})  # first-call costs
            for c in levels:  # the two servers take turns at each level, so load drift hits both alike
                for label, (_, host, port) in procs.items():
                    rows[label].append(load_level(host, port, c, args.requests, args.max_tokens, args.max_seconds))
            for label, (proc, _, _) in procs.items():
                report["servers"][label] = {"max_batch": servers[label], "peak_rss_mb": round(peak_rss_mb(proc.pid), 1),
                                            "levels": rows[label]}
        finally:
            for proc, _, _ in procs.values():
                proc.terminate()
                proc.wait(60)
        report["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
        one = {r["concurrency"]: r["tokens_per_s"] for r in report["servers"]["one_at_a_time"]["levels"]}
        report["speedup"] = {str(r["concurrency"]): round(r["tokens_per_s"] / one[r["concurrency"]], 2)
                             for r in report["servers"]["batched"]["levels"] if one[r["concurrency"]]}
    text = json.dumps(report, indent=1)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
