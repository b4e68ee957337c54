"""Scanned by SGLang's model registry when `SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models`.

Every module of the external package that defines `EntryClass` registers `EntryClass.__name__` ahead of the
built-ins. Ours is a same-named soft subclass of every built-in SGLang model class (`models.soft_class`), so every
architecture either serves soft requests or is refused at construction. Imports SGLang (and, like SGLang's own
start without an external package, all of its model modules).
"""
from softthink.sglang_glue.models import soft_classes

EntryClass = soft_classes()
