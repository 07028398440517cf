"""What the pipeline, the serving commands and the warehouse tools share, and nothing else.

  config      the shared typed settings and the dataclass -> --flag mechanism
  logs        the commands' log set-up (progress lines, warnings, --verbose)
  errors      DataValidationError, the "data failed validation" exit (code 2)
  files       write_atomically: reports and pages a reader never sees half-written
  gc_freeze   the process-wide, nesting heap freeze (runner and server)
  versions    TF Serving's version-directory rules (pusher and server)

No module here imports TensorFlow, TFX or any other package of this project.

This is the one place TF_USE_LEGACY_KERAS is set: tf.Transform's Keras layer is a tf_keras
(Keras 2) model, and TensorFlow and TFT only pick tf_keras when the variable is set before
anything touches tf.keras. Every package whose code may import TensorFlow (modules, pipelines,
serving, benchmarks) imports this package first, and the runners import it before anything else.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
