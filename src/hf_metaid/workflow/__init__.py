"""The library's recipe, stage by stage: index → tokenizer → model → prompts → train → save.

Each stage is one function with explicit, typed parameters in a module of its own (:mod:`.splitting`,
:mod:`.schemes`, :mod:`.build`, :mod:`.training_run`, :mod:`.growth`), so a script, a benchmark or the ``hf-metaid``
command runs the same recipe by calling them (the command only parses its options into the settings and prints).
The settings are grouped by stage in small dataclasses (:mod:`.settings`) whose fields carry their help text (the
command's help is written from them), and :mod:`.recipes` names the whole recipes worth choosing (``fast``, the one
``hf-metaid demo`` uses, chosen on Beauty's validation split; ``best``; ``paper``)::

    recipe = Recipe.from_name("fast")
    splits, names = split_data("beauty")
    vocabulary = build_vocabulary(splits["train"], names, recipe.index)
    run = train(splits["train"], vocabulary, "runs/demo", recipe.model, recipe.training)
    save_for_inference(run.trainer, run.tokenizer, "metaid-demo")
"""
