"""Code that TFX components load: the feature declaration, preprocessing and the model."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
