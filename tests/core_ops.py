"""`python -m tests.core_ops NAMES_FILE`: which of the op names in NAMES_FILE (a JSON list)
TensorFlow's own op registry lacks, printed as a JSON list on the last line.

Run in a process that has imported TensorFlow and no library that registers ops of its own
(tft, tensorflow-text, custom ops): the servers' zygote (tests/server_forks.py) forks one.
"""
import json
import pathlib
import sys

from tensorflow.python.framework import op_def_registry

if __name__ == "__main__":
    names = json.loads(pathlib.Path(sys.argv[1]).read_text())
    print(json.dumps(sorted(n for n in names if op_def_registry.get(n) is None)), flush=True)
