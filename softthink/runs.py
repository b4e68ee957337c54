"""Deprecated: the previous release's results-store module, split by concern. Import from the new modules; these
names stay importable from here for one release.

* :mod:`softthink.runspec`   - ``RunSpec``, ``GraderSpec``, ``JudgeSpec`` (validation, ``--set`` overrides)
* :mod:`softthink.store`     - the run directory: file names, atomic writes, JSONL, lock, ``RunDir``, secret scrubbing
* :mod:`softthink.runkey`    - fingerprints, the run key, ``plan_run``
* :mod:`softthink.generate`  - ``generate_run`` (resumable)
* :mod:`softthink.grade_runs` - grading in a process of its own
* :mod:`softthink.summaries` - ``summary.json`` and the summary frame
"""
from __future__ import annotations

from softthink.generate import generate_run, sample_uid, work_batches  # noqa: F401
from softthink.grade_runs import (grade_in_process, grade_in_subprocess, grade_run, grader_version,  # noqa: F401
                                  grades_current)
from softthink.runkey import (RUN_KEY_VERSION, engine_versions, file_sha256, load_tokenizer,  # noqa: F401
                              model_fingerprint, package_version, plan_run, resolve_device, resolve_dtype, run_key,
                              run_slug, tokenizer_fingerprint)
from softthink.runspec import (ENGINES, GPQA_OPTION_MODES, GRADER_MODES, UID_STRIDE, GraderSpec,  # noqa: F401
                               JudgeSpec, RunSpec)
from softthink.store import (CONFIG_FILE, DEFAULT_RUNS_DIR, GRADES_DIR, LOCK_FILE, REDACTED, RUNS_ENV,  # noqa: F401
                             SAMPLES_FILE, SUMMARY_FILE, TRACES_DIR, JsonlAppender, RunDir, canonical_json,
                             expected_samples, hash_key, load_grades, read_jsonl, read_run_config, resolve_runs_root,
                             run_lock, scrub_secrets, sha256_text, write_json_atomic, write_text_atomic)
from softthink.summaries import (TABLE_COLUMNS, format_table, summarize_dir, summarize_runs,  # noqa: F401
                                 write_summary)
