"""Pipeline wiring, configuration and custom components of babyweight."""
import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
