"""Build of the optional C data plane (``dialbridge.media._dataplane``).

Metadata lives in pyproject.toml; this file only declares the extension. It is optional: when
no C compiler or Python headers are present the build goes on without it and the media engine
runs its pure-Python path (see docs/media-engine.md, "Data plane").
"""

from setuptools import Extension, setup

NATIVE = "src/dialbridge/media/_native/"

setup(
    ext_modules=[
        Extension(
            "dialbridge.media._dataplane",
            sources=[NATIVE + name for name in ("module.c", "jb.c", "dsp.c", "mixer.c")],
            depends=[NATIVE + "dataplane.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-unused-function"],
            optional=True,
        )
    ]
)
