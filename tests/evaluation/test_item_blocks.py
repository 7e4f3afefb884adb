"""evaluate(items=(start, stop)): blocks of items that together are the first items, per item identical."""

from __future__ import annotations

import pytest
from test_eval_api import fake_copa_mirror  # noqa: F401  (a fixture)

from calibench.core.errors import CalibenchError
from calibench.study.store import item_id

pytestmark = pytest.mark.usefixtures("one_thread")


def _by_id(result, task):
    return {item_id(item, i): item for i, item in enumerate(result.samples[task])}


def test_blocks_equal_one_run_over_the_same_items(tiny_model_dir, heldout_file, fake_copa_mirror):  # noqa: F811
    from calibench.evaluation import evaluate

    tasks = f"copa,ppl:{heldout_file}"
    kwargs = dict(seq_len=32, batch_size=2, log_samples=True)
    whole = evaluate(str(tiny_model_dir), tasks, limit=5, **kwargs)
    first = evaluate(str(tiny_model_dir), tasks, items=(0, 2), **kwargs)
    second = evaluate(str(tiny_model_dir), tasks, items=(2, 5), **kwargs)
    for task in ("copa", f"ppl:{heldout_file}"):
        joined = {**_by_id(first, task), **_by_id(second, task)}
        assert len(_by_id(first, task)) == 2 and len(_by_id(second, task)) == 3
        expected = _by_id(whole, task)
        assert set(joined) == set(expected)
        for key, item in expected.items():
            if "nll" in item:
                assert joined[key]["nll"] == item["nll"] and joined[key]["window"] == item["window"]
            else:
                assert joined[key]["metrics"] == item["metrics"]
    # a block past the end of a task scores what is left, or nothing (copa has 6 documents)
    tail = evaluate(str(tiny_model_dir), "copa", items=(4, 50), **kwargs)
    assert len(tail.samples["copa"]) == 2
    beyond = evaluate(str(tiny_model_dir), "copa", items=(6, 9), **kwargs)
    assert not beyond.samples.get("copa")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"items": (3, 3)}, "0 <= start < stop"), ({"items": (0, 2), "limit": 2}, "replaces limit")],
)
def test_bad_blocks(tiny_model_dir, heldout_file, kwargs, message):
    from calibench.evaluation import evaluate

    with pytest.raises(CalibenchError, match=message):
        evaluate(str(tiny_model_dir), f"ppl:{heldout_file}", seq_len=32, **kwargs)


def test_a_seeded_block_takes_positions_of_one_shuffle(tiny_model_dir, heldout_file, fake_copa_mirror):  # noqa: F811
    from calibench.evaluation import evaluate
    from calibench.evaluation.samples import POSITION, ItemBlock

    tasks = f"copa,ppl:{heldout_file}"
    kwargs = dict(seq_len=32, batch_size=2, log_samples=True)
    whole = evaluate(str(tiny_model_dir), tasks, **kwargs)  # every item, in task order
    block = ItemBlock(1, 4, seed=3)
    part = evaluate(str(tiny_model_dir), tasks, items=block, **kwargs)
    for task in ("copa", f"ppl:{heldout_file}"):
        everything = whole.samples[task]
        order = block.order(len(everything))
        assert list(order) != list(range(len(everything)))  # a shuffle, not the task order
        scored = {int(item[POSITION]): item for item in part.samples[task]}
        assert sorted(scored) == [1, 2, 3]
        for position, item in scored.items():
            index = item.get("window", item.get("doc_id"))
            assert index == order[position]
            reference = everything[index]
            if "nll" in item:
                assert item["nll"] == reference["nll"]
            else:
                assert item["doc_hash"] == reference["doc_hash"] and item["metrics"] == reference["metrics"]
