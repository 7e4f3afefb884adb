"""The bad-input contract, through the installed ``calibench`` executable.

Every row runs the real entry point in a subprocess (not typer's test runner,
which shares the test's click and its exception handling) and asserts what a
user sees: exit code 2, exactly one line on stderr, no traceback, and nothing
left at the output path (nor a temporary beside it).  New commands add their
rows here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

CALIBENCH = Path(sys.executable).with_name("calibench")


@dataclass(frozen=True)
class Row:
    # placeholders: {model} {text} {set} {tmp} {out} {file} {full} {spec:NAME} {corrupt:KIND} {recipe:NAME}
    # {vocab:NAME}
    args: str
    fragment: str  # must appear in the one error line
    id: str


ROWS = [
    # ------------------------------------------------------------ usage errors, whichever click typer uses
    Row("nosuchcmd", "No such command 'nosuchcmd'", "unknown-command"),
    Row("dat build", "'data'", "unknown-command-suggests"),
    Row("eval -m {model} --bogus-flag", "No such option: --bogus-flag", "unknown-option"),
    Row("eval -m {model} --limt 3", "did you mean '--limit'", "unknown-option-suggests"),
    Row("data build {text} -m {model} --seq-len 32", "Missing option '--out'", "missing-option"),
    Row("data show", "Missing argument", "missing-argument"),
    Row(
        "compress -m {model} -c {set} --method wanda -o {out} --sparsity abc",
        "Invalid value for '--sparsity'",
        "sparsity-text",
    ),
    Row("data build {text} -m {model} -o {out} --n abc --seq-len 32", "Invalid value for '--n'", "n-text"),
    Row(
        "data build {text} -m {model} -o {out} --bos maybe --seq-len 32",
        "--bos input should be 'auto', 'always' or 'never'",
        "bad-choice",
    ),
    Row("data show {set} --windows -1", "Invalid value for '--windows'", "negative-preview"),
    # ------------------------------------------------------------ paths
    Row("data show {tmp}/missing", "is not a directory", "show-missing-dir"),
    Row("data build {tmp}/missing.txt -m {model} -o {out} --seq-len 32", "does not exist", "build-missing-file"),
    Row("data build {text} -m {model} -o {file}/set --seq-len 32", "is a file, not a directory", "out-under-file"),
    Row("data build {text} -m {model} -o {full} --seq-len 32", "already exists", "out-non-empty"),
    Row("data build {text} -m {model} -o /proc/calibench-set --seq-len 32", "not writable", "out-unwritable"),
    Row("data generate -m {model} -o /proc/calibench-gen --n 2 --seq-len 8", "not writable", "generate-unwritable"),
    Row("compress -m {model} -c {set} --method wanda -o /proc/calibench-ckpt", "not writable", "compress-unwritable"),
    Row(
        "compress -m {model} -c {set} --method wanda -o {file}/ckpt",
        "is a file, not a directory",
        "compress-under-file",
    ),
    Row("compress -m {model} -c {text} --method wanda -o {out}", "is not a directory", "calib-is-file"),
    Row("eval -m {model} --tasks ppl:wiki --out /proc/calibench.json", "not writable", "eval-unwritable"),
    Row("eval -m {model} --tasks ppl:wiki --out {tmp}", "is a directory", "eval-out-dir"),
    Row("data export {set} -m {model} --out {tmp}", "is a directory", "export-out-dir"),
    Row("data stats {set} -m {model} --out /proc/stats.json", "not writable", "stats-unwritable"),
    Row("data stats {set} -m {model} --pool {tmp}/missing-pool", "is not a directory", "stats-missing-pool"),
    Row(
        "data curate -m {model} -o {file}/cur --sources {text} --capabilities lm",
        "is a file, not a directory",
        "curate-under-file",
    ),
    Row("study run {spec:good} --out {full}", "not a study to resume", "study-out-unrelated"),
    Row("study run {spec:good} --out {file}", "is a file", "study-out-file"),
    Row("study report {tmp}/nostudy", "has no study.sqlite", "report-missing"),
    Row("clean {tmp}/missing", "is not a directory", "clean-missing"),
    Row("demo --out /proc/calibench-demo", "not writable", "demo-unwritable"),
    # ------------------------------------------------------------ sizes
    Row("data build {text} -m {model} -o {out} --n 0 --seq-len 32", "--n must be between 1", "n-zero"),
    Row("data build {text} -m {model} -o {out} --n -3 --seq-len 32", "--n must be between 1", "n-negative"),
    Row("data build {text} -m {model} -o {out} --seq-len 100000", "above the model's maximum", "seq-len-over-context"),
    Row("data build {text} -m {model} -o {out} --n 500 --seq-len 200", "disjoint windows", "larger-than-corpus"),
    Row("data generate -m {model} -o {out} --n 0 --seq-len 8", "between 1", "generate-n-zero"),
    Row("eval -m {model} --tasks ppl:wiki --limit 0", "--limit must be at least 1", "eval-limit-zero"),
    Row("eval -m {model} --tasks ppl:wiki --batch-size -1", "--batch-size must be at least 1", "eval-batch-negative"),
    Row("study run {spec:good} --out {out} --jobs 0", "--jobs must be at least 1", "jobs-zero"),
    # ------------------------------------------------------------ unknown names
    Row("data build nosuchsource -m {model} -o {out} --seq-len 32", "unknown source 'nosuchsource'", "unknown-source"),
    # ------------------------------------------------------------ set builders (the registry)
    Row(
        "data build mix:{text}=0.5,random-vocab=0.4 -m {model} -o {out} --seq-len 32",
        "--components weights must sum to 1, got 0.9",
        "mix-not-summing",
    ),
    Row(
        "data build mix:{text}=0.5,nosuch=0.5 -m {model} -o {out} --seq-len 32",
        "unknown component: unknown source 'nosuch'",
        "mix-unknown-component",
    ),
    Row("data build mix:{text}=0.5,mix:a=0.5 -m {model} -o {out} --seq-len 32", "is not NAME=WEIGHT", "mix-malformed"),
    Row(
        "data build {text} -m {model} -o {out} --seq-len 32 --t-init 0.3",
        "--t-init is not a parameter of",
        "builder-foreign-option",
    ),
    Row(
        "data build chat --data {chatbad} --chat-template {chattemplate} -m {model} -o {out} --seq-len 32",
        "messages",
        "chat-wrong-shape",
    ),
    Row("data build chat --data {chatgood} -m {model} -o {out} --seq-len 32", "no chat template", "chat-no-template"),
    Row("data build chat -m {model} -o {out} --seq-len 32", "--data is required by 'chat'", "chat-no-data"),
    Row(
        "data build hub:acme/corpus --revision nope -m {model} -o {out} --seq-len 32",
        "(revision nope): Couldn't reach",
        "hub-revision-offline",
    ),
    Row("data build hub:acme -m {model} -o {out} --seq-len 32", "is not hub:ORG/NAME", "hub-malformed"),
    Row(
        "data build {text} -m {model} -o {out} --seq-len 32 --mode sliding", "--mode input should be", "bad-length-mode"
    ),
    Row(
        "data build man-de -m {model} -o {out} --seq-len 32",
        "run `calibench assets pull manpages-l10n`",
        "language-not-pulled",
    ),
    Row("data build man-xx -m {model} -o {out} --seq-len 32", "unknown source 'man-xx'", "language-unknown"),
    Row(
        "data build self --first-token stopwords --language xx -m {model} -o {out} --seq-len 32",
        "--language has no stop-word list for 'xx'",
        "stopword-language-unknown",
    ),
    Row(
        "data generate --prompting nope -m {model} -o {out} --seq-len 32",
        "--prompting input should be",
        "generate-bad-prompting",
    ),
    Row("compress -m {model} -c {set} --method gtpq -o {out}", "unknown method 'gtpq'", "unknown-method"),
    Row("eval -m {model} --tasks nosuchtask", "nosuchtask", "unknown-task"),
    Row("eval -m no-such-model --tasks ppl:wiki", "unknown model 'no-such-model'", "unknown-model"),
    Row("assets pull nosuchasset", "nosuchasset", "unknown-asset"),
    Row("study run {spec:good} --out {out} --executor nope", "unknown executor", "unknown-executor"),
    # ------------------------------------------------------------ malformed values
    Row("compress -m {model} -c {set} --method wanda -o {out} --sparsity 0", "strictly between 0 and 1", "sparsity-0"),
    Row("compress -m {model} -c {set} --method wanda -o {out} --sparsity 1", "strictly between 0 and 1", "sparsity-1"),
    Row(
        "compress -m {model} -c {set} --method wanda -o {out} --sparsity 1.5",
        "strictly between 0 and 1",
        "sparsity-1.5",
    ),
    Row("compress -m {model} -c {set} --method sparsegpt -o {out} --structure 4:2", "0 < N < M", "nm-4-2"),
    Row("compress -m {model} -c {set} --method sparsegpt -o {out} --structure 2:0", "0 < N < M", "nm-2-0"),
    Row("compress -m {model} -c {set} --method rtn -o {out} --bits 3", "does not support 3-bit", "bits-unsupported"),
    Row("compress -m {model} -c {set} --method gptq -o {out} --group-size 96", "group", "group-not-dividing"),
    Row(
        "compress -m {model} -c {set} --method rtn -o {out} --sparsity 0.5",
        "rtn does not use sparsity",
        "ignored-param",
    ),
    # ------------------------------------------------------------ study specs
    Row("study run {spec:broken} --out {out}", "not valid YAML", "spec-broken-yaml"),
    Row("study run {spec:wrongtype} --out {out}", "n.0", "spec-wrong-type"),
    Row("study run {spec:unknownkey} --out {out}", "colour", "spec-unknown-key"),
    Row("study run {spec:empty} --out {out}", "must not be empty", "spec-empty-grid"),
    Row("study run {spec:unknownmodel} --out {out}", "unknown model 'no-such-model'", "spec-unknown-model"),
    Row("study run {tmp}/missing.yaml --out {out}", "cannot read study spec", "spec-missing"),
    # ------------------------------------------------------------ corrupt sets, refused by every reader
    Row("data show {corrupt:flipped}", "token hash", "flipped-token"),
    Row("data stats {corrupt:rehashed} -m {model}", "manifest was edited", "flipped-token-rehashed"),
    Row("compress -m {model} -c {corrupt:truncated} --method wanda -o {out}", "is corrupt", "truncated-array"),
    Row("data show {corrupt:seed}", "manifest was edited", "edited-seed"),
    Row("data show {corrupt:n}", "is corrupt", "edited-n"),
    Row("data show {corrupt:source}", "manifest was edited", "edited-source"),
    Row("data show {corrupt:setid}", "manifest was edited", "edited-set-id"),
    Row("data show {corrupt:json}", "is corrupt", "invalid-json"),
    Row("data export {corrupt:nomask} -m {model} --out {out}", "is corrupt", "missing-mask"),
    Row("data show {corrupt:vocab}", "manifest was edited", "other-tokenizer-hash"),
    Row("data stats {corrupt:oov} -m {model}", "outside its tokenizer's vocabulary", "out-of-vocabulary-id"),
    Row("data show {corrupt:negative}", "outside its tokenizer's vocabulary", "negative-id"),
    Row(
        "compress -m {model} -c {corrupt:oov} --method wanda -o {out}",
        "outside its tokenizer's vocabulary",
        "compress-oov",
    ),
    Row("study run {spec:good} --out {corrupt_study}", "a cached set of study", "study-corrupt-cache"),
    # ---- summarization
    Row(
        "eval -m {model} --tasks summ:nosuch --out {out}",
        "unknown summarization dataset 'nosuch'",
        "summ-unknown-dataset",
    ),
    Row(
        "eval -m {model} --tasks summ:{chatgood}:nli=none:harim=none --out {out}",
        "has no string 'document' field",
        "summ-jsonl-without-fields",
    ),
    Row(
        "eval -m {model} --tasks summ:{tmp}/missing.jsonl --out {out}",
        "no such summarization file",
        "summ-missing-file",
    ),
    Row(
        "eval -m {model} --tasks summ:xsum:max_new_tokens=0 --out {out}",
        "max_new_tokens must be at least 1, got 0",
        "summ-max-new-tokens-zero",
    ),
    Row(
        "eval -m {model} --tasks summ:xsum:style=poem --out {out}",
        "style must be one of paragraph, sentences, summary",
        "summ-bad-style",
    ),
    Row("eval -m {model} --tasks summ:xsum:colour=red --out {out}", "colour is not an option", "summ-unknown-option"),
    Row(
        "eval -m {model} --tasks summ:{chatgood}:chat=yes:nli=none --out {out}",
        "has no chat template",
        "summ-chat-without-template",
    ),
    Row("compare {tmp}/missing.json {tmp}/other.json", "does not exist", "compare-missing-file"),
    Row("compare {file}", "needs at least two result files", "compare-one-file"),
    Row("compare {file} {file}", "not an evaluation result", "compare-not-a-result"),
    Row("compare {file} {file} --labels a", "one label per file", "compare-labels-count"),
    Row("compare {file} {file} --out {tmp}", "is a directory", "compare-out-dir"),
    # ------------------------------------------------------------ real scale: dtype, device, schemes, recipes
    Row(
        "compress -m {model} -c {set} --method w4a16 --device cuda -o {out}", "asked for a CUDA GPU", "compress-no-gpu"
    ),
    Row(
        "compress -m {model} -c {set} --method w4a16 --device tpu -o {out}",
        "invalid device 'tpu'",
        "compress-device-invalid",
    ),
    Row(
        "compress -m {model} -c {set} --method w4a16 --dtype float8 -o {out}",
        "Invalid value for '--dtype': 'float8' is not one of",
        "compress-dtype-unknown",
    ),
    Row("compress -m {model} -c {set} --method nvfp4 -o {out}", "nvfp4 cannot run in float32", "nvfp4-float32"),
    Row(
        "compress -m {model} -c {set} --method nvfp4a16 --dtype float16 -o {out}",
        "use --dtype bfloat16",
        "nvfp4-float16",
    ),
    Row("compress -m {model} -c {set} --method w4a16 --bits 8 -o {out}", "w4a16 does not use bits", "preset-bits"),
    Row("compress -m {model} -c {set} --recipe {recipe:bad} -o {out}", "not valid YAML at line 3", "recipe-not-yaml"),
    Row(
        "compress -m {model} -c {set} --recipe {recipe:unknown} -o {out}",
        "No modifier of type 'GPTQModifer' found",
        "recipe-unparsable",
    ),
    Row(
        "compress -m {model} -c {set} --recipe {recipe:extra} -o {out}",
        "dampening: Extra inputs are not permitted",
        "recipe-bad-argument",
    ),
    Row("compress -m {model} -c {set} --recipe {recipe:empty} -o {out}", "no modifiers found", "recipe-no-modifiers"),
    Row("compress -m {model} -c {set} --recipe {tmp}/missing.yaml -o {out}", "no such recipe file", "recipe-missing"),
    Row("compress -m {model} -c {set} --recipe {recipe:ok} --bits 4 -o {out}", "drop --bits", "recipe-with-params"),
    Row(
        "compress -m {model} -c {set} --method gptq --recipe {recipe:ok} -o {out}",
        "give exactly one of --method",
        "method-and-recipe",
    ),
    Row("eval -m {model} --tasks ppl:wiki --device cuda", "asked for a CUDA GPU", "eval-no-gpu"),
    # ---- options derived from typed settings, and old spellings (accepted for one release)
    Row(
        "compress -m {model} -c {set} --method smoothquant -o {out} --activations sometimes",
        "Invalid value for '--activations': 'sometimes' is not one of 'dynamic', 'static'",
        "compress-derived-choice",
    ),
    Row("eval -m {model} --tasks ppl:wiki --bos maybe", "Invalid value for '--bos'", "eval-derived-choice"),
    Row(
        "eval -m {model} --tasks ppl:wiki --max-windows 0",
        "--max-windows must be at least 1, got 0",
        "max-windows-zero",
    ),
    Row("eval -m {model} --tasks ppl:wiki --device tpu", "invalid device 'tpu'", "eval-device-invalid"),
    Row(
        "eval {model} -m {file} --tasks ppl:wiki",
        "a positional MODEL and '--model' / '-m' both given",
        "eval-model-twice",
    ),
    Row("eval --tasks ppl:wiki", "Missing option '--model' / '-m'", "eval-no-model"),
    Row(
        "recommend -m {model} --method wanda --candidates {text} --budget 5 -o {out} --ppl-max-windows 2 "
        "--max-windows 3",
        "--ppl-max-windows and '--max-windows' both given: give only '--max-windows'",
        "recommend-old-and-new-spelling",
    ),
    Row("eval -m {model} --tasks nosuch_task --offline", "tasks with offline data: ", "eval-unknown-task-offline"),
    Row(
        "eval -m {model} --tasks ppl:wiki --backend vllm",
        "--backend vllm needs vLLM: pip install vllm",
        "eval-vllm-missing",
    ),
    Row(
        "eval -m {model} --tasks copa --fewshot-as-multiturn",
        "--fewshot-as-multiturn needs --apply-chat-template",
        "eval-multiturn-no-chat",
    ),
    Row("eval -m {model} --tasks copa --num-fewshot -1", "--num-fewshot must be 0 or more", "eval-fewshot-negative"),
    Row(
        "eval -m {model} --tasks copa --log-samples",
        "--log-samples needs somewhere to write them",
        "eval-log-samples-nowhere",
    ),
    Row("eval -m {model} --tasks copa --lm-eval-out {file}", "is a file: give a directory", "eval-lm-eval-out-file"),
    Row("study run {spec:cuda} --out {out}", "asked for a CUDA GPU", "study-no-gpu"),
    Row("study run {spec:baddtype} --out {out}", "unknown dtype 'float8'", "study-dtype-unknown"),
    # ---- inspect
    Row(
        "inspect activations {set} -m no-such-model -o {out}", "unknown model 'no-such-model'", "inspect-unknown-model"
    ),
    Row(
        "inspect activations {corrupt:othertok} -m {model} -o {out} --heldout none",
        "was made with tokenizer",
        "inspect-other-tokenizer",
    ),
    Row("inspect activations -m {model} -o {out}", "Missing argument", "inspect-no-sets"),
    Row(
        "inspect activations {set} -m {model} -o {out} --heldout none --layers nomatch",
        "matches none of the",
        "inspect-layers-match-nothing",
    ),
    Row(
        "inspect activations {set} -m {model} -o {out} --heldout none --layers (",
        "not a valid regular expression",
        "inspect-layers-bad-regex",
    ),
    Row(
        "inspect activations nosuchsource -m {model} -o {out}",
        "unknown source 'nosuchsource'",
        "inspect-unknown-source",
    ),
    Row(
        "inspect activations {set} -m {model} -o {out} --heldout nosuchsource",
        "unknown source 'nosuchsource'",
        "inspect-unknown-heldout",
    ),
    Row(
        "inspect activations random-vocab random-vocab -m {model} -o {out}",
        "two sets are labelled 'random-vocab'",
        "inspect-duplicate-label",
    ),
    Row("inspect activations {set} -m {model} -o {full}", "already exists", "inspect-out-exists"),
    Row("inspect activations {set} -m {model} -o {out} --n 0", "--n must be at least 1", "inspect-n-zero"),
    Row(
        "inspect activations {set} -m {model} -o {out} --bits 1 --heldout {set}",
        "--bits must be at least 2",
        "inspect-bits",
    ),
    Row("inspect activations {set} -m {model} -o {out} --device cuda", "asked for a CUDA GPU", "inspect-no-gpu"),
    # ---- vocab
    Row("vocab collect -m {model} -o {out}", "nothing to count", "vocab-collect-no-inputs"),
    Row(
        "vocab collect -m {model} --text {text} --min-count 1000000000 -o {out}",
        "the keep set would be empty",
        "vocab-collect-empty",
    ),
    Row("vocab collect -m {model} --calib {corrupt:flipped} -o {out}", "token hash", "vocab-collect-corrupt-set"),
    Row("vocab collect -m {model} --tasks nosuchtask -o {out}", "nosuchtask", "vocab-collect-unknown-task"),
    Row("vocab collect -m {model} --text {text} -o {tmp}", "is a directory", "vocab-collect-out-dir"),
    Row("vocab prune -m {model} --keep {vocab:empty} -o {out}", "the keep set is empty", "vocab-prune-empty-keep-set"),
    Row(
        "vocab prune -m {model} --keep {vocab:other} -o {out}", "was made for tokenizer", "vocab-prune-other-tokenizer"
    ),
    Row("vocab prune -m {model} --keep {text} -o {out}", "is not a vocabulary file", "vocab-prune-not-a-vocab-file"),
    Row(
        "vocab prune -m {model} --keep {vocab:good} --mode sideways -o {out}",
        "unknown vocab mode 'sideways'",
        "vocab-prune-bad-mode",
    ),
    Row(
        "vocab prune -m {model} --keep {vocab:good} --fallback 99999 -o {out}",
        "is not in the keep set",
        "vocab-prune-fallback-not-kept",
    ),
    Row(
        "vocab prune -m {model} --keep {vocab:good} --mode exact-input --dropped reference -o {out}",
        "restricted mode only",
        "vocab-prune-reference-exact",
    ),
    Row("vocab prune -m {model} --keep {vocab:good} -o {full}", "already exists", "vocab-prune-out-exists"),
    Row(
        "vocab prune -m {vocab:pruned} --keep {vocab:good} -o {out}",
        "is vocabulary-pruned already",
        "vocab-prune-twice",
    ),
    Row("vocab restore {model} -o {out}", "was never vocabulary-pruned", "vocab-restore-never-pruned"),
    Row("vocab restore {vocab:pruned} -o /proc/calibench-restore", "not writable", "vocab-restore-unwritable"),
    # ---- set cards, hf export, experiment tracking
    Row("data card {tmp}/missing -o {out}", "is not a directory", "card-missing-set"),
    Row("data card {corrupt:flipped} -o {out}", "token hash", "card-corrupt-set"),
    Row("data card {set} -o {out} --pool {set}", "--pool needs --model", "card-reference-without-model"),
    Row("data card {set} -m {model} -o {out} --pool {tmp}/missing", "is not a directory", "card-missing-reference"),
    Row(
        "data card {set} -m {model} -o {out} --benchmarks arc_chalenge",
        "unknown benchmark 'arc_chalenge'",
        "card-unknown-benchmark",
    ),
    Row("data card {set} -m {model} -o {out} --ngram 0", "--ngram must be at least 1", "card-ngram-zero"),
    Row("data card {set} -m {model} -o {tmp}", "is a directory", "card-out-dir"),
    Row("data export {set} -m {model} -o {full} --format hf", "already exists", "export-hf-out-exists"),
    Row("data export {set} -m {model} -o {file}/hf --format hf", "is a file, not a directory", "export-hf-under-file"),
    Row("data export {set} -m {model} -o {out} --format xml", "unknown export format 'xml'", "export-unknown-format"),
    Row(
        "data export {set} -m {model} -o {out} --push-to-hub me/set",
        "--push-to-hub needs --format hf",
        "export-push-needs-hf",
    ),
    Row(
        "data export {set} -m {model} -o {out} --format hf --push-to-hub not/a/repo",
        "is not a hub repo id",
        "export-push-bad-repo",
    ),
    Row(
        "study run {spec:badtracking} --out {out}", "unknown tracking backend 'mlfow'", "spec-unknown-tracking-backend"
    ),
    # ---- adaptive evaluation settings that cannot work fail before any work
    Row("study run {spec:adaptivecap} --out {out}", "below the first block of 50 items", "adaptive-cap-below-block"),
    Row("study run {spec:adaptivealpha} --out {out}", "eval.adaptive.alpha", "adaptive-alpha-zero"),
    Row("study run {spec:adaptiveonesource} --out {out}", "this study has one source", "adaptive-one-source"),
    Row("study run {spec:adaptivelimit} --out {out}", "drop limit and ppl_max_windows", "adaptive-with-limit"),
    Row("study run {spec:adaptivegroup} --out {out}", "list its subtasks instead", "adaptive-group-task"),
    # ---- predictors: study signals and recommend
    Row("study signals {tmp}/nostudy", "has no study.sqlite", "signals-no-study"),
    Row("study signals {corrupt_study} --signals nosuch", "unknown signal 'nosuch'", "signals-unknown-signal"),
    Row("study signals {corrupt_study} --k-layers 0", "--k-layers must be at least 1", "signals-k-zero"),
    Row("study signals {corrupt_study}", "has no finished compressed cells", "signals-unfinished-study"),
    Row(
        "recommend -m {model} --method wanda --candidates nosuch --budget 5 -o {out}",
        "unknown candidate 'nosuch': known candidates are",
        "recommend-unknown-candidate",
    ),
    Row(
        "recommend -m {model} --method wanda --candidates , --budget 5 -o {out}",
        "no candidates given",
        "recommend-no-candidates",
    ),
    Row(
        "recommend -m {model} --method wanda --candidates {text} --budget 5 -o {full}",
        "already exists",
        "recommend-out-exists",
    ),
    Row(
        "recommend -m {model} --method wanda --candidates {text} --budget 0.0001 --n 2 --seq-len 16 "
        "--tasks ppl:{text} --ppl-seq-len 16 --max-windows 2 --k-layers 1 -o {out}",
        "is too small: one full evaluation is estimated at",
        "recommend-budget-too-small",
    ),
]


def _extension_modules():
    """Row files beside this one, ``bad_rows_*.py``: each has ``ROWS`` and may have ``inputs(root, world) -> dict``.

    An input named NAME there is written ``{in:NAME}`` in a row.
    """
    import importlib.util

    for path in sorted(Path(__file__).parent.glob("bad_rows_*.py")):
        spec = importlib.util.spec_from_file_location(f"calibench_tests_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


EXTENSIONS = list(_extension_modules())
for _module in EXTENSIONS:
    ROWS += [Row(*r) if isinstance(r, tuple) else Row(r.args, r.fragment, r.id) for r in _module.ROWS]
assert len({r.id for r in ROWS}) == len(ROWS), "two bad-input rows share an id"


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """Inputs shared by the rows: a model, a corpus, a valid set, corrupt copies, specs, a study to corrupt."""
    from calibench.data.calibset import IDS_FILE, MANIFEST, MASK_FILE, Manifest, identity_set_id, tokens_sha256
    from calibench.data.draw import build_calibration_set
    from conftest import corpus_text

    root = tmp_path_factory.mktemp("bad-inputs")
    text = root / "corpus.txt"
    text.write_text("\n\n".join(corpus_text()), encoding="utf-8")
    good = root / "good-set"
    build_calibration_set(str(text), tiny_tokenizer, n=4, seq_len=32, seed=0).save(good)
    (root / "a-file").write_text("not a directory\n")
    (root / "full").mkdir()
    (root / "full" / "unrelated.txt").write_text("someone's data\n")

    def copy(kind: str) -> Path:
        target = root / "corrupt" / kind
        shutil.copytree(good, target)
        return target

    def edit_manifest(path: Path, change, rederive: bool = False) -> None:
        data = json.loads((path / MANIFEST).read_text())
        change(data)
        if rederive:  # recompute the hashes so that only the deeper check can catch it
            ids, mask = np.load(path / IDS_FILE), np.load(path / MASK_FILE)
            data["tokens_sha256"] = tokens_sha256(ids, mask)
            data["set_id"] = identity_set_id(Manifest.model_validate(data))
        (path / MANIFEST).write_text(json.dumps(data))

    def set_ids(path: Path, change) -> None:
        ids = np.load(path / IDS_FILE)
        change(ids)
        np.save(path / IDS_FILE, ids)

    corrupt = {}
    corrupt["flipped"] = copy("flipped")
    set_ids(corrupt["flipped"], lambda a: a.__setitem__((0, 1), (a[0, 1] + 1) % 100))
    corrupt["rehashed"] = copy("rehashed")
    set_ids(corrupt["rehashed"], lambda a: a.__setitem__((0, 1), (a[0, 1] + 1) % 100))
    edit_manifest(
        corrupt["rehashed"],
        lambda d: d.__setitem__(
            "tokens_sha256",
            tokens_sha256(np.load(corrupt["rehashed"] / IDS_FILE), np.load(corrupt["rehashed"] / MASK_FILE)),
        ),
    )
    corrupt["truncated"] = copy("truncated")
    raw = (corrupt["truncated"] / IDS_FILE).read_bytes()
    (corrupt["truncated"] / IDS_FILE).write_bytes(raw[: len(raw) // 2])
    corrupt["seed"] = copy("seed")
    edit_manifest(corrupt["seed"], lambda d: d.__setitem__("seed", 7))
    corrupt["n"] = copy("n")
    edit_manifest(corrupt["n"], lambda d: d.__setitem__("n", 3))
    corrupt["source"] = copy("source")
    edit_manifest(corrupt["source"], lambda d: d["source"].__setitem__("name", "wiki"))
    corrupt["setid"] = copy("setid")
    edit_manifest(corrupt["setid"], lambda d: d.__setitem__("set_id", "0" * 16))
    corrupt["json"] = copy("json")
    (corrupt["json"] / MANIFEST).write_text('{"set_id": ')
    corrupt["nomask"] = copy("nomask")
    (corrupt["nomask"] / MASK_FILE).unlink()
    corrupt["vocab"] = copy("vocab")
    edit_manifest(corrupt["vocab"], lambda d: d["tokenizer"].__setitem__("vocab_sha256", "f" * 64))
    corrupt["othertok"] = copy("othertok")  # intact, but made for another tokenizer
    edit_manifest(corrupt["othertok"], lambda d: d["tokenizer"].__setitem__("vocab_sha256", "f" * 64), rederive=True)
    vocab = len(tiny_tokenizer)
    corrupt["oov"] = copy("oov")
    set_ids(corrupt["oov"], lambda a: a.__setitem__((1, 2), vocab + 5))
    edit_manifest(corrupt["oov"], lambda d: None, rederive=True)
    corrupt["negative"] = copy("negative")
    set_ids(corrupt["negative"], lambda a: a.__setitem__((1, 2), -4))
    edit_manifest(corrupt["negative"], lambda d: None, rederive=True)

    specs = {}
    grid = {
        "models": [str(tiny_model_dir)],
        "methods": [{"name": "magnitude"}],
        "sources": [{"name": str(text)}],
        "n": [2],
        "seq_len": [16],
        "eval": {"tasks": ["ppl:wiki"], "ppl_max_windows": 1},
    }
    two_sources = {**grid, "sources": [{"name": str(text)}, {"name": "random-vocab"}]}
    adaptive_eval = {"tasks": ["ppl:wiki"]}
    bodies = {
        "good": json.dumps(grid),
        "broken": "models: [a, b\nmethods: {",
        "wrongtype": json.dumps({**grid, "n": ["abc"]}),
        "unknownkey": json.dumps({**grid, "colour": "blue"}),
        "empty": json.dumps({**grid, "sources": []}),
        "unknownmodel": json.dumps({**grid, "models": ["no-such-model"]}),
        "cuda": json.dumps({**grid, "device": "cuda"}),
        "baddtype": json.dumps({**grid, "dtype": "float8"}),
        "badtracking": json.dumps({**grid, "tracking": {"backend": "mlfow"}}),
        "adaptivecap": json.dumps({**two_sources, "eval": {**adaptive_eval, "adaptive": {"block": 50, "cap": 20}}}),
        "adaptivealpha": json.dumps({**two_sources, "eval": {**adaptive_eval, "adaptive": {"alpha": 0}}}),
        "adaptiveonesource": json.dumps({**grid, "eval": {**adaptive_eval, "adaptive": {}}}),
        "adaptivelimit": json.dumps({**two_sources, "eval": {**adaptive_eval, "limit": 5, "adaptive": {}}}),
        "adaptivegroup": json.dumps(
            {**two_sources, "eval": {**adaptive_eval, "tasks": ["ppl:wiki", "mmlu_stem"], "adaptive": {}}}
        ),
    }
    for name, body in bodies.items():
        specs[name] = root / f"{name}.yaml"
        specs[name].write_text(body + "\n")

    # a study directory whose cached set is then damaged
    study = root / "corrupt-study"
    from calibench.study.sets import SETS_DIR
    from calibench.study.store import Store

    store = Store(study)
    set_dir = study / SETS_DIR / "0123456789abcdef"
    shutil.copytree(corrupt["flipped"], set_dir)
    store.record_sets("recipe", ["0123456789abcdef"])
    store.close()
    chats = {"chatgood": root / "chat-good.jsonl", "chatbad": root / "chat-bad.jsonl", "chattemplate": root / "t.jinja"}
    chats["chattemplate"].write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    chats["chatgood"].write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n"
    )
    chats["chatbad"].write_text(json.dumps({"messages": "not a list of messages"}) + "\n")
    recipes = {name: root / f"recipe-{name}.yaml" for name in ("bad", "unknown", "extra", "empty", "ok")}
    recipes["bad"].write_text("quant_stage:\n  quant_modifiers: [unclosed\n")
    recipes["unknown"].write_text("quant_stage:\n  quant_modifiers:\n    GPTQModifer: {scheme: W4A16}\n")
    recipes["extra"].write_text("quant_stage:\n  quant_modifiers:\n    GPTQModifier: {scheme: W4A16, dampening: 0.1}\n")
    recipes["empty"].write_text("quant:\n  GPTQModifier: {}\n")
    recipes["ok"].write_text("quant_stage:\n  quant_modifiers:\n    QuantizationModifier: {scheme: FP8_DYNAMIC}\n")
    world = {
        "root": root,
        "model": tiny_model_dir,
        "recipes": recipes,
        "text": text,
        "set": good,
        "corrupt": corrupt,
        "specs": specs,
        "corrupt_study": study,
        **chats,
        "vocab": _vocab_inputs(root, tiny_model_dir, tiny_tokenizer, text),
    }
    world["spec_grid"] = lambda eval_change=None, **change: _spec_grid(world, eval_change or {}, **change)
    world["in"] = {}
    for module in EXTENSIONS:
        if hasattr(module, "inputs"):
            world["in"].update({k: Path(v) for k, v in module.inputs(root, world).items()})
    return world


def _spec_grid(world: dict, eval_change: dict, **change) -> str:
    """The JSON text of the smallest valid study spec over the world's model and corpus, with fields changed:
    row files write their bad specs as one change each (``world["spec_grid"](device="cpu")``)."""
    import json

    grid = {
        "models": [str(world["model"])],
        "methods": [{"name": "magnitude"}],
        "sources": [{"name": str(world["text"])}],
        "n": [2],
        "seq_len": [16],
        "eval": {"tasks": [f"ppl:{world['text']}"], "ppl_max_windows": 1, **eval_change},
    }
    return json.dumps({**grid, **change}, ensure_ascii=False) + "\n"


# ---- vocab: vocabulary files (good, empty, for another tokenizer) and a pruned model, for the `vocab` rows
def _vocab_inputs(root: Path, model_dir: Path, tokenizer, text: Path) -> dict:
    from calibench.vocab import Inputs, Vocabulary, collect, prune, save
    from conftest import fresh_model, make_tokenizer

    files = {"good": root / "vocab-good.json", "empty": root / "vocab-empty.json", "other": root / "vocab-other.json"}
    good = collect(tokenizer, Inputs(text=[str(text)])).save(files["good"])
    Vocabulary(tokenizer=Vocabulary.load(good).tokenizer, kept=[]).save(files["empty"])
    collect(make_tokenizer(vocab_size=280), Inputs(text=[str(text)])).save(files["other"])
    model = fresh_model(model_dir)
    prune(model, Vocabulary.load(good), tokenizer=tokenizer)
    files["pruned"] = save(model, root / "vocab-pruned", tokenizer)
    return files


def _expand(args: str, world: dict, tmp: Path, out: Path) -> list[str]:
    corrupt, specs = world["corrupt"], world["specs"]
    values = {
        "model": world["model"],
        "text": world["text"],
        "set": world["set"],
        "tmp": tmp,
        "out": out,
        "file": world["root"] / "a-file",
        "full": world["root"] / "full",
        "corrupt_study": world["corrupt_study"],
        "chatgood": world["chatgood"],
        "chatbad": world["chatbad"],
        "chattemplate": world["chattemplate"],
    }
    words = []
    for word in args.split():
        if word.startswith("{corrupt:"):
            words.append(str(corrupt[word[9:-1]]))
        elif word.startswith("{spec:"):
            words.append(str(specs[word[6:-1]]))
        elif word.startswith("{recipe:"):
            words.append(str(world["recipes"][word[8:-1]]))
        elif word.startswith("{vocab:"):
            words.append(str(world["vocab"][word[7:-1]]))
        elif word.startswith("{in:"):
            words.append(str(world["in"][word[4:-1]]))
        else:
            words.append(word.format(**values))
    return words


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _snapshot(path: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*")) if path.is_dir() else []


def run_calibench(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CALIBENCH_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_COLOR": "1",
    }
    return subprocess.run([str(CALIBENCH), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(row, world, tmp_path):
    assert CALIBENCH.is_file(), f"the calibench executable is not installed beside {sys.executable}"
    if "CUDA GPU" in row.fragment and _has_cuda():
        pytest.skip("a CUDA device is bad input only on a machine without one")
    out = tmp_path / "out"
    watched = [world["root"] / "full", world["set"], world["corrupt_study"]]
    before = {p: _snapshot(p) for p in watched}
    done = run_calibench(_expand(row.args, world, tmp_path, out), tmp_path / "home")
    lines = done.stderr.splitlines()
    if os.environ.get("CALIBENCH_BAD_INPUT_TABLE"):  # the table for docs and notes: input | line | exit code
        with open(os.environ["CALIBENCH_BAD_INPUT_TABLE"], "a", encoding="utf-8") as table:
            shown = " | ".join(line.replace("|", "\\|") for line in lines)
            table.write(f"| `calibench {row.args}` | {shown} | {done.returncode} |\n")
    assert done.returncode == 2, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n{done.stderr}"
    assert lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert row.fragment in lines[0], lines[0]
    assert not out.exists(), f"{out} was left behind"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name], list(tmp_path.iterdir())
    assert {p: _snapshot(p) for p in watched} == before, "a refused command changed an existing directory"


@pytest.mark.parametrize(
    "args, old, new, error",
    [
        ("data card {set} -o {out} --reference {set}", "--reference", "'--pool'", "--pool needs --model"),
        ("eval {model} --tasks nosuchtask", "MODEL as a positional argument", "'--model' / '-m'", "nosuchtask"),
        (
            "vocab prune {model} --keep {text} -o {out}",
            "MODEL as a positional argument",
            "'--model' / '-m'",
            "is not a vocabulary file",
        ),
        (
            "compress -m {model} -c {set} --method rtn --asym --sparsity 0.5 -o {out}",
            "--asym",
            "'--no-symmetric'",
            "rtn does not use sparsity",
        ),
        (
            "study signals {corrupt_study} --heldout-windows 0",
            "--heldout-windows",
            "'--max-windows'",
            "--max-windows must be at least 1, got 0",
        ),
    ],
)
def test_old_spelling_warns_in_one_line_and_maps_to_the_new_option(args, old, new, error, world, tmp_path):
    """An old spelling still works for one release: one warning line on stderr, then the new option's behaviour."""
    out = tmp_path / "out"
    done = run_calibench(_expand(args, world, tmp_path, out), tmp_path / "home")
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 2, done.stderr
    assert lines[0].startswith("warning: ") and old in lines[0] and f"use {new}" in lines[0], lines[0]
    assert lines[1].startswith("error: ") and error in lines[1], lines[1]
    assert not out.exists()


def test_suite_covers_every_command(world):
    """Every leaf command of the CLI has at least one row (new commands add theirs)."""
    import typer.main

    from calibench.cli import app

    def leaves(command, prefix=()):
        subs = getattr(command, "commands", None)
        if not subs:
            yield " ".join(prefix)
            return
        for name, sub in subs.items():
            yield from leaves(sub, (*prefix, name))

    covered = {" ".join(r.args.split()[:2]) for r in ROWS} | {r.args.split()[0] for r in ROWS}
    missing = [c for c in leaves(typer.main.get_command(app)) if c not in covered and c not in NO_INPUT_COMMANDS]
    assert not missing, f"commands without a bad-input row: {missing}"
    assert len(ROWS) >= 40


# Commands that take no user input to get wrong (listings, the demo's defaults).
NO_INPUT_COMMANDS = {"assets list", "data sources"}
