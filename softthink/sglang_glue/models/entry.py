"""Scanned by SGLang's model registry when `SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models`.

Every module of the external package that defines `EntryClass` registers `EntryClass.__name__`; ours are named
like the built-ins, so they take precedence for Qwen2 / Qwen3 / Llama checkpoints. Imports SGLang.
"""
from softthink.sglang_glue.models import soft_classes

EntryClass = soft_classes()
