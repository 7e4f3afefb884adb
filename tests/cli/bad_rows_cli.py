"""Bad-input rows for the commands' own checks: non-UTF-8 inputs, names too long for the file system, pathological
regexes, option ranges, taken outputs (refused unless ``--force``) and recipe arguments.

Each row failed before its fix (a traceback, exit 0 with the output overwritten, or a refusal after long work).
"""

from __future__ import annotations

from pathlib import Path

LONG = "n" * 300
DEEP_REGEX = "(" * 1500 + "a" + ")" * 1500

ROWS = [
    # ---- input files that are not UTF-8: one line, not a UnicodeDecodeError traceback
    ("data build {in:latin1} -m {model} -o {out} --seq-len 16", "is not UTF-8 text", "cli-build-latin1-txt"),
    ("data build {in:latin1-jsonl} -m {model} -o {out} --seq-len 16", "is not UTF-8 text", "cli-build-latin1-jsonl"),
    (
        "data build chat --data {chatgood} --chat-template {in:latin1} -m {model} -o {out} --seq-len 32",
        "is not UTF-8",
        "cli-chat-template-latin1",
    ),
    ("compare {in:latin1} {in:latin1}", "is not UTF-8", "cli-compare-latin1"),
    ("vocab collect -m {model} -o {out} --text {in:latin1}", "is not UTF-8", "cli-vocab-collect-latin1"),
    ("vocab prune -m {model} --keep {in:latin1} -o {out}", "is not UTF-8", "cli-vocab-prune-keep-latin1"),
    # ---- values out of range
    ("data build {text} -m {model} -o {out} --seq-len 32 --seed -1", "--seed", "cli-build-seed-negative"),
    ("eval -m {model} --tasks copa --gen-kwargs max_gen_toks=abc", "max_gen_toks must be", "cli-gen-kwargs-text"),
    # ---- names longer than the file system allows (ENAMETOOLONG): one line
    (f"data build {LONG} -m {{model}} -o {{out}} --seq-len 32", "name too long", "cli-source-name-too-long"),
    (f"eval -m {LONG} --tasks ppl:wiki", "name too long", "cli-model-name-too-long"),
    (f"data build {{text}} -m {{model}} -o {{tmp}}/{LONG} --seq-len 32", "name too long", "cli-build-out-too-long"),
    (f"eval -m {{model}} --tasks ppl:wiki -o {{tmp}}/{LONG}.json", "name too long", "cli-eval-out-too-long"),
    (f"data card {{set}} -o {{tmp}}/{LONG}.md", "name too long", "cli-card-out-too-long"),
    # ---- a regex that exhausts the stack when compiled (RecursionError, 2,997 lines)
    (
        f"inspect activations {{set}} -m {{model}} -o {{out}} --layers {DEEP_REGEX}",
        "too deeply nested",
        "cli-deep-regex",
    ),
    # ---- inspect activations: ranges checked before the activation pass
    ("inspect activations {set} -m {model} -o {out} --bits 17", "--bits must be at most 16", "cli-inspect-bits-17"),
    (
        "inspect activations {set} -m {model} -o {out} --int8-threshold -1",
        "--int8-threshold must be more than 0",
        "cli-inspect-int8-negative",
    ),
    (
        "inspect activations {set} -m {model} -o {out} --outlier-layer-fraction 2",
        "--outlier-layer-fraction must be at most 1",
        "cli-inspect-layer-fraction-2",
    ),
    (
        "inspect activations {set} -m {model} -o {out} --massive-ratio 0",
        "--massive-ratio must be more than 0",
        "cli-inspect-massive-ratio-0",
    ),
    ("inspect activations {set} -m {model} -m {model} -o {out}", "given twice", "cli-inspect-model-twice"),
    # ---- a taken output file is refused unless --force (it was overwritten silently)
    (
        "eval -m {model} --tasks ppl:wiki -o {file}",
        "already exists: choose another --out or pass --force",
        "cli-eval-out-taken",
    ),
    ("data stats {set} -o {file}", "already exists: choose another --out or pass --force", "cli-stats-out-taken"),
    (
        "data export {set} -m {model} -o {file}",
        "already exists: choose another --out or pass --force",
        "cli-export-out-taken",
    ),
    ("data card {set} -o {file}", "already exists: choose another --out or pass --force", "cli-card-out-taken"),
    (
        "vocab collect -m {model} -o {file} --text {text}",
        "already exists: choose another --out or pass --force",
        "cli-vocab-collect-out-taken",
    ),
    ("compare {file} {file} --plot {file}", "already exists: choose another --plot", "cli-compare-plot-taken"),
    # ---- vocab collect: ranges refused before the counting pass (were refused after it)
    (
        "vocab collect -m {model} -o {out} --text {text} --min-count -1",
        "--min-count must be at least 1",
        "cli-vocab-min-count-negative",
    ),
    ("vocab collect -m {model} -o {out} --text {text} --top-k 0", "--top-k must be at least 1", "cli-vocab-top-k-zero"),
    # ---- compare: duplicate labels made an ambiguous table
    ("compare {file} {file} --labels a,a", "--labels repeats a", "cli-compare-labels-duplicate"),
    # ---- a recipe sparsity of 2.0 gave exit 0 and an all-zero model
    (
        "compress -m {model} -c {set} --recipe {in:recipe-sparsity-2} -o {out}",
        "sparsity must be",
        "cli-recipe-sparsity-2",
    ),
    # ---- curate: a pool its sources cannot fill, refused before stage 1 (was after the pool was built)
    (
        "data curate -m {model} -o {out} --sources {text} --capabilities lm --n 8000 --seq-len 16",
        "more than the sources can give",
        "cli-curate-pool-too-large",
    ),
    # ---- recommend: rtn reads no set, so ranking sets spent the budget for nothing
    (
        "recommend -m {model} --method rtn --candidates wiki --budget 5 -o {out}",
        "reads no calibration set",
        "cli-recommend-rtn",
    ),
]


def inputs(root: Path, world: dict) -> dict:
    latin1 = root / "cli-latin1.txt"
    latin1.write_bytes("caf\xe9 na\xefve r\xe9sum\xe9\n".encode("latin-1") * 10)
    recipe = root / "cli-recipe-sparsity-2.yaml"
    recipe.write_text(
        "sparsity_stage:\n  sparsity_modifiers:\n    WandaPruningModifier: {sparsity: 2.0, targets: ['Linear']}\n"
    )
    latin1_jsonl = root / "cli-latin1.jsonl"
    latin1_jsonl.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    return {"latin1": latin1, "latin1-jsonl": latin1_jsonl, "recipe-sparsity-2": recipe}
