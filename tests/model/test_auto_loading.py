"""Saved folders through the Auto classes, and with trust_remote_code where hf_metaid is not installed (Hub)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

import hf_metaid as hm
from conftest import logits, prompt, with_item_vectors
from ranking_checks import assert_same_recommendations

pytestmark = pytest.mark.numerics  # reloads and remote code compared with the package: rerun under other CPU kernels


def test_save_and_auto_load_give_the_same_logits_and_recommendations(tmp_path, model, tokenizer):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "metaid"
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert type(loaded) is hm.MetaIDForConditionalGeneration
    text = prompt(tokenizer)
    # to float32 rounding, not bit for bit: a reloaded model's weights sit at other memory alignments, which some
    # BLAS kernels (MKL's SSE4.2 path) round otherwise
    torch.testing.assert_close(logits(loaded, loaded_tok, text), logits(model, tokenizer, text), rtol=1e-5, atol=1e-5)
    got = loaded.recommend(loaded_tok, user="u1", history=["i3"], k=5)
    assert_same_recommendations(got, model.recommend(tokenizer, user="u1", history=["i3"], k=5), atol=1e-5)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockPackage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_metaid" or name.startswith("hf_metaid."):
                raise ImportError("hf_metaid is not installed here")

    sys.meta_path.insert(0, BlockPackage())
    sys.path = [p for p in sys.path if not p.endswith("src")]
    try:
        import hf_metaid  # noqa: F401
        raise SystemExit("hf_metaid is importable: the test would prove nothing")
    except ImportError:
        pass
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    folder, text = sys.argv[1], sys.argv[2]
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, decoder_input_ids=torch.tensor([[0, tok.cluster_token_ids[1]]])).logits
    torch.save(out, folder + "/remote_logits.pt")
    print(json.dumps({"ids": batch["input_ids"][0].tolist(), "recs": model.recommend(tok, user="u1", k=4),
                      "module": type(model).__module__}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["plain", "tree", "item-vectors"])
def test_remote_code_load_without_the_package(tmp_path, model, tokenizer, head):
    """The folder's own code loads and scores as the package does (the logits read are those after a cluster
    token, where the tree softmax and the item output act; the item input acts in the encoder)."""
    model.set_tree_softmax(tokenizer, head == "tree")
    if head == "item-vectors":
        with_item_vectors(model, tokenizer, input=True)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSeq2SeqLM"] == "modeling_metaid.MetaIDForConditionalGeneration"
    for code in (
        "modeling_metaid.py",
        "decoding.py",
        "item_tree.py",
        "t5_fast_path.py",
        "tree_softmax.py",
        "item_output.py",
    ):
        assert (tmp_path / code).is_file()
    text = prompt(tokenizer)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(tmp_path), text], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules")
    assert remote["ids"] == tokenizer([text])["input_ids"][0]
    # The subprocess may run with another thread count, which changes the order of float sums: items must agree
    # up to ties, scores and logits to float32 rounding of values of order 1 (1e-5), never bit for bit.
    torch.testing.assert_close(
        torch.load(tmp_path / "remote_logits.pt"), logits(model, tokenizer, text), rtol=1e-5, atol=1e-5
    )
    assert_same_recommendations(remote["recs"], model.recommend(tokenizer, user="u1", k=4), atol=1e-5)
