"""``calibench inspect activations`` end to end on tiny models: files, determinism, several models, the API."""

from __future__ import annotations

import json

import pytest

from conftest import run, tiny_llama_config

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory, tiny_tokenizer):
    """Another tiny Llama (other seed, three layers) with the same tokenizer: a second model to compare."""
    import torch
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama-b")
    torch.manual_seed(1)
    LlamaForCausalLM(tiny_llama_config(tiny_tokenizer, layers=3)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def heldout_dir(tmp_path_factory, tiny_text_set):
    path = tmp_path_factory.mktemp("inspect-heldout") / "heldout"
    tiny_text_set.save(path)
    return path


def test_inspect_writes_report_json_and_plots_and_repeats_exactly(tmp_path, tiny_model_dir, heldout_dir, capsys):
    args = [
        "inspect",
        "activations",
        str(heldout_dir),
        "random-vocab",
        "random-punct",
        "-m",
        str(tiny_model_dir),
        "--n",
        "4",
        "--seq-len",
        "16",
        "--heldout",
        str(heldout_dir),
    ]
    code, out, err = run([*args, "-o", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert "activation statistics per set" in out and "stability (linear_input)" in out
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {
        "inspection.json",
        "channels.npz",
        "report.md",
        "layer_max.png",
        "channel_heatmap.png",
        "stability.png",
        "quant_error.png",
    }
    for name in files - {"inspection.json", "channels.npz", "report.md"}:
        assert (tmp_path / "a" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "a" / "inspection.json").read_text())
    (result,) = data["models"]
    assert list(result["stats"]) == ["heldout", "random-vocab", "random-punct"]
    assert len(result["comparisons"]) == 3 and result["quant_error"]["heldout"] == "heldout"
    # scales calibrated on the held-out windows themselves clip nothing there
    assert all(row["clipped"]["heldout"] == 0.0 for row in result["quant_error"]["layers"])
    report = (tmp_path / "a" / "report.md").read_text()
    assert "### Stability across sets (3 pairs" in report and "int8 activation error on held-out heldout" in report
    assert "Across models" not in report  # one model: nothing to compare across

    code, _, err = run([*args, "-o", str(tmp_path / "b")], capsys)
    assert code == 0, err
    assert (tmp_path / "b" / "inspection.json").read_text() == (tmp_path / "a" / "inspection.json").read_text()
    # the per-channel vectors live in channels.npz: equal across runs, and equal to a direct measurement
    import numpy as np

    from calibench.data.calibset import CalibrationSet
    from calibench.inspect import activation_stats
    from calibench.inspect.report import channel_key
    from calibench.models import load_model

    first, second = np.load(tmp_path / "a" / "channels.npz"), np.load(tmp_path / "b" / "channels.npz")
    assert sorted(first.files) == sorted(second.files)
    assert all(np.array_equal(first[k], second[k]) for k in first.files)
    direct = activation_stats(
        load_model(str(tiny_model_dir), dtype="float32", device="cpu"), CalibrationSet.load(heldout_dir)
    )
    for site in direct.sites:
        np.testing.assert_array_equal(
            first[channel_key(0, "heldout", site.name, "channel_max_abs")],
            np.asarray(site.channel_max_abs, dtype=np.float32),
        )
        np.testing.assert_array_equal(first[channel_key(0, "heldout", site.name, "int8_counts")], site.int8_counts)


def test_several_models_get_their_own_sections_and_a_comparison(tmp_path, tiny_model_dir, second_model_dir, capsys):
    code, _, err = run(
        [
            "inspect",
            "activations",
            "random-vocab",
            "random-punct",
            "-m",
            str(tiny_model_dir),
            "-m",
            str(second_model_dir),
            "--n",
            "3",
            "--seq-len",
            "12",
            "--heldout",
            "none",
            "-o",
            str(tmp_path / "two"),
        ],
        capsys,
    )
    assert code == 0, err
    data = json.loads((tmp_path / "two" / "inspection.json").read_text())
    assert [m["model"] for m in data["models"]] == [str(tiny_model_dir), str(second_model_dir)]
    assert [max(s["layer"] for s in m["stats"]["random-vocab"]["sites"]) for m in data["models"]] == [1, 2]
    assert all(m["quant_error"] is None for m in data["models"])
    report = (tmp_path / "two" / "report.md").read_text()
    assert report.count("### Per set") == 2 and "## Across models" in report
    assert not (tmp_path / "two" / "quant_error.png").exists()


def test_api_matches_the_cli_and_a_set_for_another_tokenizer_is_refused(tmp_path, tiny_model_dir, heldout_dir):
    from calibench.core.errors import TokenizerMismatchError
    from calibench.data.calibset import CalibrationSet
    from calibench.inspect import activation_stats
    from calibench.inspect.run import inspect_activations
    from calibench.models import load_model

    inspection = inspect_activations([str(tiny_model_dir)], [str(heldout_dir)], n=4, seq_len=16, heldout=None)
    direct = activation_stats(
        load_model(str(tiny_model_dir), dtype="float32", device="cpu"), CalibrationSet.load(heldout_dir)
    )
    assert inspection.models[0].stats["heldout"].model_dump() == direct.model_dump()
    assert inspection.models[0].stability.pairs == 0

    from calibench.inspect.run import resolve_set
    from conftest import make_tokenizer

    other = make_tokenizer()
    other.add_tokens(["<extra-token>"])
    with pytest.raises(TokenizerMismatchError, match="was made with tokenizer"):
        resolve_set(str(heldout_dir), str(tiny_model_dir), other, n=4, seq_len=16, seed=0)
