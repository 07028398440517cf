"""What the pipeline, the serving commands and the warehouse tools share, and nothing else.

  config      the shared typed settings and the dataclass -> --flag mechanism
  logs        the commands' log set-up (progress lines, warnings, --verbose)
  errors      DataValidationError, the "data failed validation" exit (code 2)
  gc_freeze   the process-wide, nesting heap freeze (runner and server)
  versions    TF Serving's version-directory rules (pusher and server)

No module here imports TensorFlow, TFX or any other package of this project.
"""
