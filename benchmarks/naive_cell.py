"""One study cell the way a careful user writes it without calibench: load, oneshot, evaluate, print.

The naive side of ``benchmarks/bench_study_throughput.py``, run as a fresh
Python process per cell.  It imports torch, transformers, datasets,
llm-compressor and lm-eval only (never calibench); everything it needs comes
from the JSON job description the benchmark writes:

* the model directory, the method and its parameters, the seed;
* the calibration windows as token ids (exported from the study's own sets,
  so both sides calibrate on the same tokens);
* the held-out documents for perplexity (a JSON list of texts), how to join
  them, the window length and count, the batch size;
* lm-eval's task name and YAML (the one lm-eval ships), a local copy of its
  data (parquet files, one per split: there is no network), the splits that
  copy lacks, the item limit and the batch size.

The recipe is spelled out here as an llm-compressor user writes it: GPTQ with
a W4 symmetric group-64 weight scheme on every Linear (static activation
order, dampening 0.01: llm-compressor's defaults, set explicitly), or Wanda
at 50% unstructured; the output projection stays dense.  Perplexity is the
usual loop: join the documents, tokenize once, cut non-overlapping windows,
``model(x, labels=x).loss`` per batch.

    python benchmarks/naive_cell.py JOB.json RESULT.json
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()

import torch  # noqa: E402  (the clock starts before the heavy imports: they are part of a cell's cost)
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

# The output projection stays dense.  A regex, not "lm_head": llm-compressor 0.14's pruning modifiers
# see the head as "lm_head." and a bare name would not match it (Wanda would prune the tied embedding).
IGNORE = ["re:(^|.*\\.)lm_head\\.?$"]


def gptq_recipe(params: dict) -> list:
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from llmcompressor.modifiers.gptq import GPTQModifier

    weights = QuantizationArgs(
        num_bits=params.get("bits", 4),
        type="int",
        symmetric=params.get("symmetric", True),
        strategy="group",
        group_size=params.get("group_size", 128),
    )
    scheme = QuantizationScheme(targets=["Linear"], weights=weights)
    return [
        GPTQModifier(
            config_groups={"group_0": scheme},
            ignore=IGNORE,
            dampening_frac=params.get("dampening", 0.01),
            actorder="static" if params.get("actorder", True) else None,
        )
    ]


def wanda_recipe(params: dict) -> list:
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    return [WandaPruningModifier(sparsity=params.get("sparsity", 0.5), mask_structure="0:0", ignore=IGNORE)]


RECIPES = {"gptq": gptq_recipe, "wanda": wanda_recipe}


def compress(model, tokenizer, job: dict) -> None:
    from llmcompressor import oneshot

    windows = job["calibration"]["input_ids"]  # one list of real (unpadded) token ids per window
    dataset = Dataset.from_dict({"input_ids": windows, "attention_mask": [[1] * len(w) for w in windows]})
    torch.manual_seed(job["seed"])
    oneshot(
        model=model,
        dataset=dataset,
        recipe=RECIPES[job["method"]](job["params"]),
        num_calibration_samples=len(windows),
        max_seq_length=job["calibration"]["seq_len"],
        shuffle_calibration_samples=False,  # the windows are already in a random order; keep it
        processor=tokenizer,
    )


def perplexity(model, tokenizer, ppl: dict) -> dict:
    texts = json.loads(Path(ppl["texts"]).read_text(encoding="utf-8"))
    ids = tokenizer(ppl["joiner"].join(texts), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    add_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]  # only if the tokenizer adds it itself
    seq_len = ppl["seq_len"]
    body = seq_len - 1 if add_bos else seq_len
    count = min(len(ids) // body, ppl["max_windows"])
    windows = torch.tensor(ids[: count * body], dtype=torch.long).view(count, body)
    if add_bos:
        windows = torch.cat([torch.full((count, 1), bos, dtype=torch.long), windows], dim=1)
    nll, tokens = 0.0, 0
    with torch.inference_mode():
        for begin in range(0, count, ppl["batch_size"]):
            batch = windows[begin : begin + ppl["batch_size"]]
            predicted = batch.shape[0] * (batch.shape[1] - 1)
            nll += float(model(input_ids=batch, labels=batch).loss) * predicted
            tokens += predicted
    return {"perplexity": math.exp(nll / tokens), "windows": count, "tokens": tokens, "bos": add_bos}


def lm_eval_task(model, tokenizer, task: dict, workdir: Path) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    # lm-eval's own task YAML, with its dataset pointed at local parquet copies (no hub here)
    config = {
        "include": task["yaml"],
        "task": task["name"],
        "dataset_path": "parquet",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": task["data_files"]},
        **{f"{split}_split": None for split in task.get("missing_splits", [])},
    }
    yaml_path = workdir / f"{task['name']}_local.yaml"
    yaml_path.write_text(json.dumps(config))  # JSON is YAML
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=task["batch_size"])
    out = simple_evaluate(
        model=lm,
        tasks=[str(yaml_path)],
        num_fewshot=task.get("num_fewshot", 0),
        limit=task["limit"],
        task_manager=TaskManager(include_defaults=False),  # the YAML is given by path: no need to index 1,000s
    )
    metrics = out["results"][task["name"]]
    return {k.split(",")[0]: v for k, v in metrics.items() if "," in k and "_stderr" not in k}


def main() -> None:
    job_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    job = json.loads(job_path.read_text())
    torch.set_num_threads(job["threads"])
    workdir = result_path.parent / (result_path.stem + ".work")
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # whatever the libraries write lands here
    seconds = {"imports": time.perf_counter() - STARTED}

    tick = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(job["model_path"])
    model = AutoModelForCausalLM.from_pretrained(job["model_path"], dtype=torch.float32)
    model.eval()
    seconds["load"] = time.perf_counter() - tick

    if job["method"] != "dense":
        tick = time.perf_counter()
        compress(model, tokenizer, job)
        seconds["compress"] = time.perf_counter() - tick

    tick = time.perf_counter()
    ppl = perplexity(model, tokenizer, job["ppl"])
    seconds["perplexity"] = time.perf_counter() - tick

    tick = time.perf_counter()
    task = lm_eval_task(model, tokenizer, job["lm_eval"], workdir)
    seconds["lm_eval"] = time.perf_counter() - tick

    seconds["total"] = time.perf_counter() - STARTED
    result = {
        "cell": job["cell"],
        "ppl": ppl,
        "task": task,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "calibench_imported": "calibench" in sys.modules,  # never, by construction; checked by the benchmark
    }
    result_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
