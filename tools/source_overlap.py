"""Overlap of one offline calibration source with every offline benchmark (the data card's n-gram check).

The card checks a built set; this checks the whole source split a set can be
drawn from, so it bounds what any set of that source can share with a
benchmark.  Prints one row per benchmark: items, checkable items, items
sharing a 13-word n-gram with the source, and the share.

Usage::

    python tools/source_overlap.py math            # the calibration split of the offline `math` source
    python tools/source_overlap.py math --split heldout
"""

from __future__ import annotations

import argparse

from calibench.card.benchmarks import offline_benchmarks
from calibench.card.contamination import DEFAULT_N, benchmark_overlap, index_windows
from calibench.data.sources.offline import CALIBRATION, HELDOUT, OFFLINE_DOMAINS, OfflineSource


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=[d.name for d in OFFLINE_DOMAINS])
    parser.add_argument("--split", choices=(CALIBRATION, HELDOUT), default=CALIBRATION)
    parser.add_argument("--n", type=int, default=DEFAULT_N)
    args = parser.parse_args()
    domain = next(d for d in OFFLINE_DOMAINS if d.name == args.source)
    docs = OfflineSource(domain).documents(args.split)
    texts = docs.batch(range(len(docs)))
    index = index_windows(texts, args.n)
    benchmarks = offline_benchmarks()
    print(f"source {args.source} ({args.split}): {len(texts)} documents, {args.n}-gram check")
    print("| benchmark | items | checkable | overlapping | share |")
    print("|---|---:|---:|---:|---:|")
    for text in benchmarks.texts:
        o = benchmark_overlap(index, text.name, text.items, kind=text.kind, labels=text.labels)
        print(f"| {o.benchmark} | {o.items} | {o.checkable} | {o.items_hit} | {o.item_share:.4f} |")
    for name, why in benchmarks.skipped.items():
        print(f"| {name} | skipped: {why} | | | |")


if __name__ == "__main__":
    main()
