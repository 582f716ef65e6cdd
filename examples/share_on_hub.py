"""Share a META ID model and its ID vocabulary on the Hugging Face Hub.

What travels: the model folder (weights, ``config.json`` with ``auto_map``, the tokenizer files, the entity
vocabulary ``metaid_vocab.json``, the model's code files and its model card ``README.md`` with the measured
metrics), so anyone can load it with ``trust_remote_code=True`` without installing hf_metaid; and the vocabulary as
its own dataset repository (Parquet rows, a dataset card), which others can build their own models on. The two cards
link each other. ``hf-metaid push MODEL REPO_ID --vocab-repo REPO`` does the same from the command line.

Without ``--repo-id`` the script writes the exact folders that would be pushed, shows their cards, and loads the
model back the way a Hub user would: ``AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)``.

    python examples/share_on_hub.py --out shared                      # offline: build, evaluate, save, reload
    python examples/share_on_hub.py --model metaid-demo --repo-id me/beauty-metaid   # push a trained folder
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import hf_metaid as hm
from hf_metaid.saving.hub_push import push_model
from hf_metaid.saving.model_card import evaluation_record

LOAD_WITHOUT_PACKAGE = textwrap.dedent(
    """
    import importlib.abc, sys
    class Hide(importlib.abc.MetaPathFinder):  # behave as if hf_metaid were not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "hf_metaid":
                raise ImportError(name)
    sys.meta_path.insert(0, Hide())
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    folder, user = sys.argv[1], sys.argv[2]
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    print(type(model).__module__, type(model).__name__)
    print(model.recommend(tokenizer, user=user, k=5))
    """
)


def build_small_model(out: Path) -> tuple[Path, str]:
    """A small untrained model on a slice of Beauty, enough to show what a shared folder holds: its vocabulary is
    saved as a dataset folder first, the tokenizer is built from that folder as someone reusing it would, and the
    model is evaluated on 100 test users so that its card carries measured figures (those of an untrained model)."""
    interactions = hm.load_interactions()
    users = list(dict.fromkeys(interactions["user"][:]))[:500]
    keep = set(users)
    interactions = interactions.filter(lambda batch: [u in keep for u in batch["user"]], batched=True)
    splits = hm.leave_one_out(interactions)
    vocabulary = hm.MetaIDIndexer(num_clusters=10, embedding="spectral").fit(
        splits["train"], catalogue=hm.catalogue(interactions), source="beauty (first 500 users)"
    )
    vocabulary.save_pretrained(out / "vocabulary")
    tokenizer = hm.MetaIDTokenizer.from_base(None, out / "vocabulary")  # a folder or a Hub repo id "org/name"
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer)
    metrics = hm.evaluate_recommender(model, tokenizer, splits["test"], limit=100, progress=False)
    record = evaluation_record(metrics, split="test", data="beauty (first 500 users)", exclude_seen=True)
    hm.save_for_inference(model, tokenizer, out / "model", evaluation=record)
    return out / "model", users[0]


def show(folder: Path) -> None:
    print(f"folder that would be pushed: {folder}")
    for path in sorted(folder.iterdir()):
        if path.is_file():
            print(f"  {path.name:32s} {path.stat().st_size:>10,d} bytes")
    card = (folder / "README.md").read_text(encoding="utf-8")
    print(textwrap.indent("\n".join(card.splitlines()[:16]), "  | "))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a folder written by 'hf-metaid train' (default: build a small one)")
    parser.add_argument("--out", default="shared", help="where to write the small model when --model is absent")
    parser.add_argument("--repo-id", help="Hub repository to push to, e.g. user/beauty-metaid (needs a login)")
    args = parser.parse_args(argv)

    if args.model:
        folder = Path(args.model)
        user = hm.MetaIDTokenizer.from_pretrained(folder).entity_vocabulary.users[0]
    else:
        folder, user = build_small_model(Path(args.out))
        show(Path(args.out) / "vocabulary")
    show(folder)

    if args.repo_id:
        urls = push_model(folder, args.repo_id, vocab_repo=f"{args.repo_id}-ids")
        print(f"pushed the model to {urls['model']} and its vocabulary to {urls['vocabulary']}")

    print("loading it back with trust_remote_code=True, hf_metaid hidden:")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PACKAGE, str(folder), user], check=True, capture_output=True, text=True
    )
    print(textwrap.indent(result.stdout.strip(), "  "))


if __name__ == "__main__":
    main()
