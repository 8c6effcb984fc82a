"""ONNX Runtime session options with the process's thread budget (``AVAFORGE_ORT_THREADS``).

A queue worker sets the variable at start-up from its CPU limit (services/common/threads.py); unset or 0 keeps
ONNX Runtime's default, one intra-op thread per core, which suits the embedded CLI that owns the machine.
Several workers on one node each taking every core fight over them (issue 13: two workers were slower than
one), so a worker's sessions use only the cores its limit grants.
"""

from __future__ import annotations

import os

import onnxruntime as ort

ENV = "AVAFORGE_ORT_THREADS"


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    threads = int(os.environ.get(ENV) or 0)
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # sequential execution: the inter-op pool stays idle anyway
    return options
