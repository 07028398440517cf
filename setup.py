"""babyweight: a TFX pipeline from a natality warehouse to a served birth-weight model.

The ranges here say what the code works with; requirements.lock pins the exact, tested set.
"""
from setuptools import find_packages, setup

setup(
    name="babyweight",
    version="0.1.0",
    description="TFX pipeline predicting birth weight from US natality data, local or on Vertex AI",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["common*", "pipelines*", "modules*", "warehouse*",
                                    "reports*", "serving*", "monitoring*"]),
    package_data={
        "warehouse": ["queries/*.sql"],
        "reports": ["templates/*.j2", "templates/*.js"],
        "monitoring": ["templates/*.j2"],
        "serving.ui": ["templates/*.html", "static/*.js", "static/*.css", "static/*.svg"],
    },
    py_modules=["local_runner", "vertex_runner"],
    install_requires=[
        "tfx[kfp]==1.16.0",
        "apache-beam[gcp]>=2.61,<2.62",
        "duckdb>=1.1",
        "sqlglot>=25",
        "pyfarmhash>=0.3",
        "matplotlib>=3.8",
    ],
    extras_require={"test": ["pytest>=8"]},
)
