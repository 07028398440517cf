"""Code that TFX components load: the feature declaration, preprocessing and the model."""
import os

# tf.Transform's Keras layer is a tf_keras (Keras 2) model; TFT only selects tf_keras when this is
# set before anything touches tf.keras, so it is set as soon as this package is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
