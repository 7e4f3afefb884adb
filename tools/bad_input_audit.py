"""Audit the bad-input contract: about a hundred mistakes a user can make, through the installed executable.

Each case runs ``calibench`` in a subprocess (a 30 s timeout, offline) in a
fresh working directory, and is classified:

* ``clean``: exit 2, exactly one stderr line starting ``error: ``, no
  traceback, nothing written (no ``--out``, nothing new in the working
  directory, no input changed) and under 15 s;
* otherwise every way it broke the contract: ``exit N``, ``N stderr lines``,
  ``traceback``, ``wrote``, ``changed input``, ``slow Ns``, ``timeout``.

It is a tool, not a test (it takes minutes): it builds its own tiny inputs
with the bundled offline model ``smollm2-135m`` and prints a Markdown table.

    PYTHONPATH=/work/main/src python tools/bad_input_audit.py --table /tmp/audit-before.md
    PYTHONPATH=src python tools/bad_input_audit.py --table /tmp/audit-after.md

``--only ID,...`` runs some cases; ``--jobs`` runs cases side by side (timings
then include the contention).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CALIBENCH = Path(sys.executable).with_name("calibench")
MODEL = "smollm2-135m"
TIMEOUT_S = 30
CLEAN_S = 15
LONG = "n" * 300

# (id, arguments). Placeholders: {m} model, {txt} corpus, {set} a valid set, {in} the inputs folder, {out} a fresh
# output path, {w} the case's working folder, {taken} an existing file, {takendir} an existing non-empty folder,
# {long} a 300-character name, and the files written by build_inputs().
CASES: list[tuple[str, str]] = [
    # ---- data build
    ("build-binary-source", "data build {bin} -m {m} -o {out} --seq-len 32"),
    ("build-empty-source", "data build {empty} -m {m} -o {out} --seq-len 32"),
    ("build-latin1-source", "data build {latin1} -m {m} -o {out} --seq-len 32"),
    ("build-seed-negative", "data build {txt} -m {m} -o {out} --n 2 --seq-len 16 --seed -1"),
    ("build-n-huge", "data build {txt} -m {m} -o {out} --n 99999999999999999999 --seq-len 16"),
    ("build-seq-len-zero", "data build {txt} -m {m} -o {out} --n 2 --seq-len 0"),
    ("build-out-long-name", "data build {txt} -m {m} -o {w}/{long} --n 2 --seq-len 16"),
    ("build-source-long-name", "data build {long} -m {m} -o {out} --n 2 --seq-len 16"),
    ("build-model-long-name", "data build {txt} -m {long} -o {out} --n 2 --seq-len 16"),
    ("build-out-taken", "data build {txt} -m {m} -o {takendir} --n 2 --seq-len 16"),
    ("build-out-proc", "data build {txt} -m {m} -o /proc/calibench-audit --n 2 --seq-len 16"),
    ("build-chat-template-latin1", "data build chat --data {chat} --chat-template {latin1} -m {m} -o {out}"),
    ("build-chat-data-binary", "data build chat --data {bin} --chat-template {tmpl} -m {m} -o {out}"),
    ("build-mix-negative-weight", "data build mix:{txt}=2,random-vocab=-1 -m {m} -o {out} --n 2 --seq-len 16"),
    ("build-sets-zero", "data build {txt} -m {m} -o {out} --n 2 --seq-len 16 --sets 0"),
    ("build-sets-huge", "data build {txt} -m {m} -o {out} --n 2 --seq-len 16 --sets 1000000"),
    ("build-hub-many-colons", "data build hub:a/b:c:d:e -m {m} -o {out} --n 2 --seq-len 16"),
    ("build-device-cuda-99", "data build {txt} -m {m} -o {out} --n 2 --seq-len 16 --device cuda:99x"),
    ("build-dtype-int4", "data build {txt} -m {m} -o {out} --n 2 --seq-len 16 --dtype int4"),
    ("build-jsonl-garbage", "data build {badjsonl} -m {m} -o {out} --n 2 --seq-len 16"),
    ("build-out-under-file", "data build {txt} -m {m} -o {taken}/x --n 2 --seq-len 16"),
    # ---- data generate
    ("generate-n-negative", "data generate -m {m} -o {out} --n -1 --seq-len 8"),
    ("generate-out-taken", "data generate -m {m} -o {takendir} --n 2 --seq-len 8"),
    ("generate-t-init-negative", "data generate -m {m} -o {out} --n 2 --seq-len 8 --t-init -1"),
    ("generate-prompts-binary", "data generate -m {m} -o {out} --n 2 --seq-len 8 --prompting file --prompts {bin}"),
    ("generate-max-new-zero", "data generate -m {m} -o {out} --n 2 --seq-len 8 --max-new-tokens 0"),
    ("generate-out-long", "data generate -m {m} -o {w}/{long} --n 2 --seq-len 8"),
    # ---- data curate
    ("curate-n-over-pool", "data curate -m {m} -o {out} --sources {txt} --capabilities lm --n 2000 --seq-len 16"),
    ("curate-out-taken", "data curate -m {m} -o {takendir} --sources {txt} --capabilities lm --n 2 --seq-len 16"),
    ("curate-source-binary", "data curate -m {m} -o {out} --sources {bin} --capabilities lm --n 2 --seq-len 16"),
    ("curate-capability-unknown", "data curate -m {m} -o {out} --sources {txt} --capabilities nosuch --n 2"),
    ("curate-pool-size-zero", "data curate -m {m} -o {out} --sources {txt} --capabilities lm --pool-size 0 --n 2"),
    # ---- data stats / show
    ("stats-file-not-set", "data stats {bin}"),
    ("stats-corrupt-manifest", "data stats {badset}"),
    ("stats-out-taken", "data stats {set} -o {taken}"),
    ("stats-batch-zero", "data stats {set} -m {m} --batch-size 0"),
    ("stats-out-long", "data stats {set} -o {w}/{long}.json"),
    ("show-corrupt-manifest", "data show {badset}"),
    ("show-empty-dir", "data show {emptydir}"),
    ("show-chars-zero", "data show {set} --chars 0"),
    ("show-truncated-ids", "data show {truncset}"),
    # ---- data export / card
    ("export-out-taken", "data export {set} -m {m} -o {taken}"),
    ("export-out-long", "data export {set} -m {m} -o {w}/{long}.jsonl"),
    ("export-format-case", "data export {set} -m {m} -o {out} --format HF"),
    ("export-truncated-set", "data export {truncset} -m {m} -o {out}"),
    ("card-out-taken", "data card {set} -o {taken}"),
    ("card-out-long", "data card {set} -o {w}/{long}.md"),
    ("card-ngram-negative", "data card {set} -o {out} --ngram -5"),
    ("card-benchmarks-commas", "data card {set} -o {out} --benchmarks ,,,"),
    ("card-binary-set", "data card {bin} -o {out}"),
    # ---- eval
    ("eval-out-taken", "eval -m {m} --tasks ppl:wiki -o {taken}"),
    ("eval-gen-kwargs-text", "eval -m {m} --tasks ppl:wiki --gen-kwargs max_gen_toks=abc"),
    ("eval-gen-kwargs-malformed", "eval -m {m} --tasks ppl:wiki --gen-kwargs temperature"),
    ("eval-ppl-binary", "eval -m {m} --tasks ppl:{bin}"),
    ("eval-ppl-latin1", "eval -m {m} --tasks ppl:{latin1}"),
    ("eval-ppl-empty", "eval -m {m} --tasks ppl:{empty}"),
    ("eval-limit-negative", "eval -m {m} --tasks ppl:wiki --limit -1"),
    ("eval-fewshot-negative", "eval -m {m} --tasks ppl:wiki --num-fewshot -1"),
    ("eval-model-long", "eval -m {long} --tasks ppl:wiki"),
    ("eval-out-long", "eval -m {m} --tasks ppl:wiki -o {w}/{long}.json"),
    ("eval-corrupt-checkpoint", "eval -m {badckpt} --tasks ppl:wiki"),
    ("eval-tasks-empty", "eval -m {m} --tasks ,"),
    ("eval-batch-zero", "eval -m {m} --tasks ppl:wiki --batch-size 0"),
    ("eval-ppl-seq-len-negative", "eval -m {m} --tasks ppl:wiki --ppl-seq-len -5"),
    # ---- compress
    ("compress-out-taken", "compress -m {m} -c {set} --method wanda -o {takendir}"),
    ("compress-recipe-sparsity-2", "compress -m {m} -c {set} --recipe {recipe2} -o {out}"),
    ("compress-recipe-latin1", "compress -m {m} -c {set} --recipe {latin1} -o {out}"),
    ("compress-recipe-binary", "compress -m {m} -c {set} --recipe {bin} -o {out}"),
    ("compress-recipe-empty", "compress -m {m} -c {set} --recipe {empty} -o {out}"),
    ("compress-recipe-list", "compress -m {m} -c {set} --recipe {recipelist} -o {out}"),
    ("compress-recipe-bad-type", "compress -m {m} -c {set} --recipe {recipetype} -o {out}"),
    ("compress-out-long", "compress -m {m} -c {set} --method wanda -o {w}/{long}"),
    ("compress-bits-999", "compress -m {m} -c {set} --method gptq --bits 999 -o {out}"),
    ("compress-group-negative", "compress -m {m} -c {set} --method gptq --group-size -1 -o {out}"),
    ("compress-sparsity-nan", "compress -m {m} -c {set} --method wanda --sparsity nan -o {out}"),
    ("compress-corrupt-checkpoint", "compress -m {badckpt} -c {set} --method rtn -o {out}"),
    ("compress-calib-empty-dir", "compress -m {m} -c {emptydir} --method rtn -o {out}"),
    ("compress-calib-corrupt", "compress -m {m} -c {badset} --method rtn -o {out}"),
    # ---- vocab
    ("vocab-collect-out-taken", "vocab collect -m {m} -o {taken} --text {txt}"),
    ("vocab-collect-binary", "vocab collect -m {m} -o {out} --text {bin}"),
    ("vocab-collect-latin1", "vocab collect -m {m} -o {out} --text {latin1}"),
    ("vocab-collect-min-count-negative", "vocab collect -m {m} -o {out} --text {txt} --min-count -1"),
    ("vocab-collect-top-k-zero", "vocab collect -m {m} -o {out} --text {txt} --top-k 0"),
    ("vocab-prune-keep-binary", "vocab prune -m {m} --keep {bin} -o {out}"),
    ("vocab-prune-keep-latin1", "vocab prune -m {m} --keep {latin1} -o {out}"),
    ("vocab-prune-out-taken", "vocab prune -m {m} --keep {txt} -o {takendir}"),
    ("vocab-restore-not-pruned", "vocab restore {set} -o {out}"),
    ("vocab-restore-empty-dir", "vocab restore {emptydir} -o {out}"),
    # ---- inspect
    ("inspect-layers-deep-regex", "inspect activations {set} -m {m} -o {out} --layers {deepregex}"),
    ("inspect-layers-bad-regex", "inspect activations {set} -m {m} -o {out} --layers [unclosed"),
    ("inspect-bits-17", "inspect activations {set} -m {m} -o {out} --bits 17"),
    ("inspect-int8-threshold-negative", "inspect activations {set} -m {m} -o {out} --int8-threshold -1"),
    ("inspect-layer-fraction-2", "inspect activations {set} -m {m} -o {out} --outlier-layer-fraction 2"),
    ("inspect-massive-ratio-zero", "inspect activations {set} -m {m} -o {out} --massive-ratio 0"),
    ("inspect-same-model-twice", "inspect activations {set} -m {m} -m {m} -o {out}"),
    ("inspect-heldout-n-zero", "inspect activations {set} -m {m} -o {out} --heldout-n 0"),
    ("inspect-out-taken", "inspect activations {set} -m {m} -o {takendir}"),
    # ---- compare
    ("compare-latin1", "compare {latin1} {latin1}"),
    ("compare-binary", "compare {bin} {bin}"),
    ("compare-labels-duplicate", "compare {result} {result2} --labels a,a"),
    ("compare-plot-taken", "compare {result} {result2} --plot {taken}"),
    ("compare-out-taken", "compare {result} {result2} -o {taken}"),
    ("compare-empty", "compare {empty} {empty}"),
    # ---- recommend
    ("recommend-rtn", "recommend -m {m} --method rtn --candidates {txt} --budget 5 -o {out}"),
    ("recommend-budget-negative", "recommend -m {m} --method wanda --candidates {txt} --budget -1 -o {out}"),
    ("recommend-budget-nan", "recommend -m {m} --method wanda --candidates {txt} --budget nan -o {out}"),
    ("recommend-out-taken", "recommend -m {m} --method wanda --candidates {txt} --budget 5 -o {takendir}"),
    (
        "recommend-params-text",
        "recommend -m {m} --method wanda --params sparsity=abc --candidates {txt} --budget 5 -o {out}",
    ),
    # ---- assets, study, clean, demo
    ("assets-pull-unknown", "assets pull no-such-asset"),
    ("assets-pull-long", "assets pull {long}"),
    ("study-spec-latin1", "study run {latin1} --out {out}"),
    ("study-spec-binary", "study run {bin} --out {out}"),
    ("study-signals-file", "study signals {bin}"),
    ("study-report-empty-dir", "study report {emptydir}"),
    ("demo-out-file", "demo --out {taken}"),
]


def build_inputs(root: Path, env: dict) -> dict[str, str]:
    """Every input file the cases name, written under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    words = "the a model data set of in calibration window token layer weight quantize prune text".split()
    txt = root / "corpus.txt"
    txt.write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(120)) for _ in range(40)), encoding="utf-8")
    files = {"txt": txt, "bin": root / "blob.bin", "empty": root / "empty.txt", "latin1": root / "latin1.txt"}
    files["bin"].write_bytes(bytes(range(256)) * 8)
    files["empty"].write_bytes(b"")
    files["latin1"].write_bytes("caf\xe9 na\xefve r\xe9sum\xe9\n".encode("latin-1") * 20)
    files["badjsonl"] = root / "garbage.jsonl"
    files["badjsonl"].write_text('{"text": 1}\n[not json\n', encoding="utf-8")
    files["chat"] = root / "chat.jsonl"
    files["chat"].write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}) + "\n"
    )
    files["tmpl"] = root / "t.jinja"
    files["tmpl"].write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    files["taken"] = root / "taken.txt"
    files["taken"].write_text("someone's file\n")
    files["takendir"] = root / "taken-dir"
    files["takendir"].mkdir(exist_ok=True)
    (files["takendir"] / "keep.txt").write_text("someone's data\n")
    files["emptydir"] = root / "empty-dir"
    files["emptydir"].mkdir(exist_ok=True)
    files["recipe2"] = root / "recipe-sparsity-2.yaml"
    files["recipe2"].write_text(
        "sparsity_stage:\n  sparsity_modifiers:\n    WandaPruningModifier: {sparsity: 2.0, targets: ['Linear']}\n"
    )
    files["recipelist"] = root / "recipe-list.yaml"
    files["recipelist"].write_text("- a\n- b\n")
    files["recipetype"] = root / "recipe-type.yaml"
    files["recipetype"].write_text(
        "quant_stage:\n  quant_modifiers:\n    GPTQModifier: {scheme: W4A16, block_size: many, targets: ['Linear']}\n"
    )
    files["badckpt"] = root / "bad-checkpoint"
    files["badckpt"].mkdir(exist_ok=True)
    (files["badckpt"] / "config.json").write_text('{"model_type": ')
    for name in ("result", "result2"):
        files[name] = root / f"{name}.json"
        files[name].write_text(json.dumps({"model": name, "rows": [], "tasks": [], "samples": {}}))
    files["set"] = root / "set"
    if not (files["set"] / "manifest.json").exists():
        done = subprocess.run(
            [str(CALIBENCH), "data", "build", str(txt), "-m", MODEL, "-o", str(files["set"]), "--n", "4",
             "--seq-len", "32"],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            sys.exit(f"cannot build the audit's calibration set:\n{done.stderr}")
    for name, damage in (("badset", "manifest"), ("truncset", "ids")):
        files[name] = root / name
        if not files[name].exists():
            shutil.copytree(files["set"], files[name])
            if damage == "manifest":
                (files[name] / "manifest.json").write_text('{"set_id": ')
            else:
                ids = files[name] / "input_ids.npy"
                raw = ids.read_bytes()
                ids.write_bytes(raw[: len(raw) // 2])
    values = {k: str(v) for k, v in files.items()}
    values.update({"m": MODEL, "long": LONG, "in": str(root), "deepregex": "(" * 1500 + "a" + ")" * 1500})
    return values


def fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_case(case: tuple[str, str], values: dict[str, str], work_root: Path, env: dict, lock_inputs: bool) -> dict:
    ident, template = case
    work = work_root / ident
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "out"
    args = [word.format(**values, out=out, w=work) for word in template.split()]
    before = fingerprint(Path(values["in"])) if lock_inputs else ""
    started = time.perf_counter()
    try:
        done = subprocess.run([str(CALIBENCH), *args], capture_output=True, text=True, env=env, cwd=work,
                              timeout=TIMEOUT_S)  # fmt: skip
        code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, stderr = None, (exc.stderr or b"").decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else ""
    seconds = time.perf_counter() - started
    lines = stderr.splitlines()
    problems = []
    if code is None:
        problems.append(f"timeout {TIMEOUT_S}s")
    elif code != 2:
        problems.append(f"exit {code}")
    if "Traceback" in stderr:
        problems.append(f"traceback ({len(lines)} lines)")
    elif code is not None and len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    elif code is not None and lines and not lines[0].startswith("error: "):
        problems.append("no error: line")
    left = [p.name for p in work.iterdir()]
    if left:
        problems.append(f"wrote {', '.join(sorted(left))[:60]}")
    if lock_inputs and fingerprint(Path(values["in"])) != before:
        problems.append("changed input")
    if code is not None and seconds >= CLEAN_S:
        problems.append(f"slow {seconds:.0f}s")
    shutil.rmtree(work, ignore_errors=True)
    last = next((ln for ln in reversed(lines) if ln.strip()), "")
    error = next((ln for ln in lines if ln.startswith("error: ")), last)
    return {"id": ident, "args": template, "verdict": "clean" if not problems else "; ".join(problems),
            "seconds": seconds, "line": error[:160]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, help="Write the Markdown table here too.")
    parser.add_argument("--inputs", type=Path, help="Where to build the inputs (default: a temporary folder).")
    parser.add_argument("--only", help="Comma-separated case ids.")
    parser.add_argument("--jobs", type=int, default=1, help="Cases run side by side.")
    opts = parser.parse_args(argv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "NO_COLOR": "1", "PYTHONPATH": str(Path(os.environ.get("PYTHONPATH", "src")).absolute())}  # fmt: skip
    root = Path(opts.inputs or tempfile.mkdtemp(prefix="calibench-audit-"))
    values = build_inputs(root / "inputs", env)
    cases = CASES if not opts.only else [c for c in CASES if c[0] in opts.only.split(",")]
    work_root = root / "work"
    # side by side, a case cannot tell its own input changes from another's: check inputs only when serial
    with ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        results = list(pool.map(lambda c: run_case(c, values, work_root, env, opts.jobs == 1), cases))
    clean = sum(r["verdict"] == "clean" for r in results)
    head = [
        f"# bad-input audit: {clean} of {len(results)} clean",
        "",
        f"calibench from PYTHONPATH={env['PYTHONPATH']}; timeout {TIMEOUT_S} s, clean under {CLEAN_S} s; "
        f"{opts.jobs} side by side.",
        "",
        "| id | command | verdict | s | stderr (error line, or last) |",
        "|---|---|---|---|---|",
    ]
    rows = [
        f"| {r['id']} | `{r['args'].replace('|', '/')}` | {r['verdict']} | {r['seconds']:.0f} | "
        f"{r['line'].replace('|', '/')} |"
        for r in results
    ]
    text = "\n".join(head + rows) + "\n"
    print(text)
    if opts.table:
        opts.table.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
