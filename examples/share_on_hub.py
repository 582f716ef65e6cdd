"""Share a META ID model and its ID vocabulary on the Hugging Face Hub.

What travels: one folder with the weights, ``config.json`` (with ``auto_map``), the tokenizer files, the entity
vocabulary (``metaid_vocab.json``) and the model's code files, so anyone can load it with ``trust_remote_code=True``
without installing hf_metaid. The vocabulary can also be shared on its own, as a dataset.

Without ``--repo-id`` (or offline) the script writes the exact folder that would be pushed, lists it, and loads it
back the way a Hub user would: ``AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)``.

    python examples/share_on_hub.py --out shared-model                     # offline: build, save, reload
    python examples/share_on_hub.py --model metaid-demo --repo-id me/beauty-metaid   # push a trained folder
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import hf_metaid as hm

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


def build_small_model(out: Path):
    """A small untrained model on a slice of Beauty, enough to show what a shared folder holds."""
    from hf_metaid.indexing import MetaIDIndexer

    interactions = hm.load_interactions()
    users = list(dict.fromkeys(interactions["user"][:]))[:500]
    keep = set(users)
    interactions = interactions.filter(lambda batch: [u in keep for u in batch["user"]], batched=True)
    splits = hm.leave_one_out(interactions)
    vocabulary = MetaIDIndexer(num_clusters=10, embedding="spectral").fit(
        splits["train"], catalogue=hm.catalogue(interactions)
    )
    tokenizer = hm.MetaIDTokenizer.from_base(None, vocabulary)
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return tokenizer, users[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a folder written by 'hf-metaid train' (default: build a small one)")
    parser.add_argument("--out", default="shared-model", help="where to write the small model when --model is absent")
    parser.add_argument("--repo-id", help="Hub repository to push to, e.g. user/beauty-metaid (needs a login)")
    args = parser.parse_args(argv)

    if args.model:
        folder = Path(args.model)
        tokenizer = hm.MetaIDTokenizer.from_pretrained(folder)
        user = tokenizer.entity_vocabulary.users[0]
    else:
        folder = Path(args.out)
        tokenizer, user = build_small_model(folder)
    print(f"folder that would be pushed: {folder}")
    for path in sorted(folder.iterdir()):
        print(f"  {path.name:32s} {path.stat().st_size:>10,d} bytes")

    if args.repo_id:
        from transformers import AutoModelForSeq2SeqLM

        AutoModelForSeq2SeqLM.from_pretrained(folder).push_to_hub(args.repo_id)
        tokenizer.push_to_hub(args.repo_id)
        tokenizer.entity_vocabulary.to_dataset().push_to_hub(f"{args.repo_id}-vocabulary")
        print(f"pushed to {args.repo_id} (model + tokenizer) and {args.repo_id}-vocabulary (the IDs as a dataset)")

    print("loading it back with trust_remote_code=True, hf_metaid hidden:")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PACKAGE, str(folder), user], check=True, capture_output=True, text=True
    )
    print(textwrap.indent(result.stdout.strip(), "  "))


if __name__ == "__main__":
    main()
