"""The babyweight wide-and-deep regressor and the functions TFX's Trainer and Tuner call.

Keras flavour: tf_keras (Keras 2), imported as `tf_keras`. Why: tf.Transform 1.16's
`transform_features_layer()` is a tf_keras layer and TFX 1.16 / TFMA 0.47 expect tf_keras
SavedModels; mixing it with Keras 3 objects fails. `TF_USE_LEGACY_KERAS=1` (set by
`common/__init__.py` and the Makefile) makes TFT pick tf_keras too. Keras 3 is still installed
(KerasTuner pulls it), which is why the tuner is a BaseTuner, not keras_tuner.RandomSearch.

The course's DNNLinearCombinedRegressor, rebuilt from layers, with two guarantees built in:
  wide: one-hot of every id feature but plurality (sex, age/week buckets, their cross) -> linear
  deep: z-scored age and weeks + embeddings of the same ids -> ReLU layers -> linear
  plurality: an offset per (plurality, gestation bucket) that falls with every extra baby by
        construction (modules.layers.MonotoneOffset); the unknown count sits outside the chain
  output: wide + deep + plurality through a sigmoid scaled to the label's declared range
        (modules.layers.BoundedOutput), trained with MSE, reported as RMSE ("rmse").

TFX loads the entry points by these dotted names; each job lives in its own module:
  modules.network      the model above            modules.model_input  its input (tf.data)
  modules.export       the SavedModel, signatures modules.warm_start   continuing from a model
  modules.training     run_fn and its seeds       modules.tuning       tuner_fn, the search
  modules.contract     the names other folders read (config keys, signatures, output key)
"""
from modules.training import run_fn  # noqa: F401 - TFX loads modules.model.run_fn
from modules.tuning import tuner_fn  # noqa: F401 - TFX loads modules.model.tuner_fn
