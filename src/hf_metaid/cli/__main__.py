"""``python -m hf_metaid.cli``: the ``hf-metaid`` command (how the console entry restarts itself)."""

import os

from .main import main

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
raise SystemExit(main())
