"""What ``calibench inspect`` costs: hook overhead against plain forward passes, and peak memory against n.

Overhead: the same windows, the same batches, one process, three timings:

* the full forward pass (embedding, every layer, the LM head), what a user
  would call "running the set through the model";
* the decoder stack alone (stopped after the last layer, as inspect does);
* ``activation_stats`` (hooks and every accumulator).

Memory: ``activation_stats`` on n = 16 and n = 256 windows, each in a fresh
child process that samples its own RSS during the call: the working memory
is the peak during the call minus the RSS just before it (model and windows
already loaded).  The accumulators are per channel, so the working memory
should not grow with n: one batch of activations, whatever the set size.

    python benchmarks/bench_inspect.py --model smollm2-135m --n 16 --seq-len 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def overhead(model_name: str, n: int, seq_len: int, batch_size: int, repeats: int) -> dict:
    import torch

    from calibench.curate.layers import find_decoder_layers
    from calibench.data.builders import build_set
    from calibench.inspect import activation_stats
    from calibench.models import load_model

    model = load_model(model_name, dtype="float32", device="cpu")
    calib = build_set("wiki", model=model_name, n=n, seq_len=seq_len, seed=0)
    ids, mask = calib.to_torch()
    stack = find_decoder_layers(model)

    class Stop(Exception):
        pass

    def forward(stop_after_stack: bool) -> None:
        handle = None
        if stop_after_stack:

            def stop(*_):
                raise Stop

            handle = stack.layers[-1].register_forward_hook(stop)
        try:
            with torch.no_grad():
                for begin in range(0, n, batch_size):
                    try:
                        model(
                            input_ids=ids[begin : begin + batch_size],
                            attention_mask=mask[begin : begin + batch_size],
                            use_cache=False,
                        )
                    except Stop:
                        pass
        finally:
            if handle is not None:
                handle.remove()

    full = _time(lambda: forward(False), repeats)
    decoder = _time(lambda: forward(True), repeats)
    stats = _time(lambda: activation_stats(model, calib, batch_size=batch_size), repeats)
    return {
        "model": model_name,
        "n": n,
        "seq_len": seq_len,
        "threads": torch.get_num_threads(),
        "full_forward_s": round(full, 3),
        "decoder_forward_s": round(decoder, 3),
        "inspect_s": round(stats, 3),
        "inspect_over_full_forward": round(stats / full, 2),
        "inspect_over_decoder_forward": round(stats / decoder, 2),
    }


def _memory_child(model_name: str, n: int, seq_len: int) -> None:
    """RSS just before ``activation_stats`` and its peak during the call, sampled every 10 ms."""
    import threading

    import psutil
    import torch

    from calibench.data.builders import build_set
    from calibench.inspect import activation_stats
    from calibench.models import load_model

    model = load_model(model_name, dtype="float32", device="cpu")
    calib = build_set("wiki", model=model_name, n=n, seq_len=seq_len, seed=0)
    ids, mask = calib.to_torch()
    with torch.no_grad():  # page in the memory-mapped weights first: their pages are not inspect's memory
        model(input_ids=ids[:1], attention_mask=mask[:1], use_cache=False)
    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        activation_stats(model, calib)
    finally:
        done.set()
        sampler.join()
    print(
        json.dumps(
            {
                "n": n,
                "rss_before_mb": round(before / 2**20),
                "peak_during_mb": round(peak[0] / 2**20),
                "working_mb": round((peak[0] - before) / 2**20),
                "process_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


def memory(model_name: str, seq_len: int, sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n), "--model", model_name, "--seq-len", str(seq_len)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-sizes", default="16,256")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.memory_child is not None:
        _memory_child(args.model, args.memory_child, args.seq_len)
        return
    result = {
        "overhead": overhead(args.model, args.n, args.seq_len, args.batch_size, args.repeats),
        "memory": memory(args.model, args.seq_len, [int(s) for s in args.memory_sizes.split(",")]),
    }
    small, large = result["memory"][0], result["memory"][-1]
    result["working_memory_growth_mb"] = large["working_mb"] - small["working_mb"]
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
