"""Bad-input rows for studies: specs every cell of which compress/eval/the builders would refuse, stores that are
not a calibench store, damaged records, `study signals` options, and an unreachable Ray cluster.

Each is refused in one line, exit 2, before any model loads or any file is written (the stores here live under
the suite's watched ``full`` directory, so the suite also checks that nothing in them changed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROWS = [
    # ---- specs that compress / the builders would refuse, refused for the whole study before any cell runs
    ("study run {in:spec-latin1} --out {out}", "is not UTF-8", "study-spec-not-utf8"),
    ("demo --spec {in:spec-latin1} --out {out}", "is not UTF-8", "demo-spec-not-utf8"),
    ("study run {in:spec-seqlen} --out {out}", "seq_len 100000 is above the model's maximum", "study-seq-len-too-long"),
    ("study run {in:spec-nvfp4} --out {out}", "nvfp4 cannot run in float32", "study-nvfp4-float32"),
    ("study run {in:spec-w4a16} --out {out}", "does not divide the input dimension", "study-w4a16-shapes"),
    ("study run {in:spec-hub} --out {out}", "(HF_HUB_OFFLINE is set)", "study-unknown-hub-model-offline"),
    (
        "study run {in:spec-keep} --out {out}",
        "keep_weights: Input should be a valid boolean",
        "study-keep-weights-word",
    ),
    (
        "study run {in:spec-good} --out {out} --executor ray --address 127.0.0.1:1",
        "cannot reach the Ray",
        "study-ray-down",
    ),
    # ---- stores that are not a calibench store: refused without being touched
    ("study report {in:store-empty}", "is empty (0 bytes)", "study-report-empty-store"),
    ("study run {in:spec-good} --out {in:store-empty}", "is empty (0 bytes)", "study-run-empty-store"),
    ("study signals {in:store-empty}", "is empty (0 bytes)", "study-signals-empty-store"),
    ("study report {in:store-text}", "not an SQLite database", "study-report-not-a-database"),
    ("study run {in:spec-good} --out {in:store-text}", "not an SQLite database", "study-run-not-a-database"),
    ("study signals {in:store-text}", "not an SQLite database", "study-signals-not-a-database"),
    ("study report {in:store-foreign}", "no table 'cells'", "study-report-foreign-database"),
    # ---- damaged or edited records
    ("study report {in:store-badjson}", "is not valid JSON", "study-report-record-not-json"),
    ("study report {in:store-nonnumeric}", "is not a number", "study-report-result-not-a-number"),
    ("study report {in:store-edited}", "its configuration was edited", "study-report-edited-config"),
    ("study run {in:spec-good} --out {in:store-edited}", "its configuration was edited", "study-run-edited-config"),
    # ---- study signals options refused before the store is written or a model loads
    ("study signals {in:store-done} --batch-size 0", "--batch-size must be at least 1", "signals-batch-size-zero"),
    ("study signals {in:store-done} --signals=", "--signals names no signal", "signals-empty-list"),
    ("study signals {in:store-done} --k-layers 100", "--k-layers 100 is more than the 2", "signals-k-layers-too-many"),
]


def _done_store(directory: Path, world: dict) -> tuple[Path, str]:
    """A store with one finished magnitude cell (as a study writes it), without running anything."""
    from calibench.study.cells import expand
    from calibench.study.spec import StudySpec
    from calibench.study.store import Store

    spec = StudySpec.model_validate(json.loads(world["spec_grid"]()))
    cell = next(c for c in expand(spec) if not c.is_dense)
    store = Store(directory)
    store.record_sets("recipe", ["0123456789abcdef"])
    row = {"task": "ppl:wiki", "metric": "word_perplexity", "value": 12.5, "stderr": None, "n": 1}
    store.record_success(cell, [row], "0123456789abcdef", {"dtype": "float32"}, 1.0)
    store.close()
    return directory, cell.key


def _sql(directory: Path, statement: str, *args) -> None:
    import sqlite3

    conn = sqlite3.connect(directory / "study.sqlite")
    with conn:
        conn.execute(statement, args)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def inputs(root: Path, world: dict) -> dict:
    specs = root / "study-specs"
    specs.mkdir(exist_ok=True)
    files = {}
    bodies = {
        "spec-good": world["spec_grid"](),
        "spec-seqlen": world["spec_grid"](seq_len=[100000]),
        "spec-nvfp4": world["spec_grid"](methods=[{"name": "nvfp4"}], dtype="float32"),
        "spec-hub": world["spec_grid"](models=["no-such-org/no-such-model"]),
        "spec-keep": world["spec_grid"](keep_weights="sometimes"),
    }
    # a model whose input dimensions (96, 192) no 128-group divides: config and tokenizer only, no weights, so a
    # refusal here also shows that nothing was loaded
    narrow = root / "narrow-model"
    shutil.copytree(world["model"], narrow, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"), dirs_exist_ok=True)
    config = json.loads((narrow / "config.json").read_text())
    config.update(hidden_size=96, intermediate_size=192)
    (narrow / "config.json").write_text(json.dumps(config))
    bodies["spec-w4a16"] = world["spec_grid"](models=[str(narrow)], methods=[{"name": "w4a16"}])
    for name, body in bodies.items():
        files[name] = specs / f"{name}.yaml"
        files[name].write_text(body)
    files["spec-latin1"] = specs / "latin1.yaml"
    files["spec-latin1"].write_bytes(world["spec_grid"](name="étude").encode("latin-1"))

    stores = root / "full"  # the suite's watched directory: a refused command must change nothing in it
    for name in ("store-empty", "store-text", "store-foreign"):
        (stores / name).mkdir(parents=True, exist_ok=True)
        files[name] = stores / name
    (stores / "store-empty" / "study.sqlite").write_bytes(b"")
    (stores / "store-text" / "study.sqlite").write_text("these are someone's notes, not a database\n")
    import sqlite3

    foreign = sqlite3.connect(stores / "store-foreign" / "study.sqlite")
    foreign.execute("CREATE TABLE notes (text TEXT)")
    foreign.commit()
    foreign.close()
    files["store-done"], _ = _done_store(stores / "store-done", world)
    files["store-badjson"], key = _done_store(stores / "store-badjson", world)
    _sql(files["store-badjson"], "UPDATE cells SET record = ? WHERE key = ?", '{"dtype": ', key)
    files["store-nonnumeric"], key = _done_store(stores / "store-nonnumeric", world)
    _sql(files["store-nonnumeric"], "UPDATE results SET value = ? WHERE key = ?", "twelve", key)
    files["store-edited"], key = _done_store(stores / "store-edited", world)
    _sql(files["store-edited"], "UPDATE cells SET config = json_set(config, '$.n', 3) WHERE key = ?", key)
    return files
