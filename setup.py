"""Builds groupconv._C, the C++ kernels (src/groupconv/csrc), when the package is installed.

Metadata is in pyproject.toml. The kernels (csrc/cpu/kernels_impl.h) are compiled once per
instruction set, each copy in its own namespace, and csrc/cpu/direct.cpp picks one at run time
from ATen's own CPU capability, so one build runs on any x86-64 (AVX-512, AVX2 or baseline)
and builds elsewhere (baseline only). Install with --no-build-isolation: the build compiles
against the torch already installed.
"""

import os
import platform
import sys

from setuptools import setup

try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError:  # an isolated build: no torch to build against, groupconv runs on PyTorch's kernels
    print("groupconv: torch is not importable here, so the native kernels are not built", file=sys.stderr)
    setup()
    sys.exit(0)

CSRC = os.path.join("src", "groupconv", "csrc")
X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")

# ATen's own flags for these capabilities (cmake/Codegen.cmake); DEFAULT is the compiler's baseline.
ISA_FLAGS = {"DEFAULT": []}
if X86:
    ISA_FLAGS["AVX2"] = ["-mavx2", "-mfma", "-mf16c"]
    ISA_FLAGS["AVX512"] = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"]


def _isa_of(source: str) -> str | None:
    """The ISA an isa_<n>_<ISA>.cpp is compiled for; None for the other sources."""
    stem = os.path.splitext(os.path.basename(source))[0]
    return stem.split("_", 2)[2] if stem.startswith("isa_") else None


class BuildIsaExtension(BuildExtension):
    """BuildExtension that adds each isa_<n>_<ISA>.cpp's instruction-set flags (setuptools gives
    one set of flags to every source of an extension)."""

    def build_extension(self, ext):
        compile_one = self.compiler._compile

        def compile_for_isa(obj, src, ext_name, cc_args, extra_postargs, pp_opts):
            isa = _isa_of(src)
            if isa is not None:
                flags = [f"-DCPU_CAPABILITY={isa}", f"-DCPU_CAPABILITY_{isa}", *ISA_FLAGS[isa]]
                if isinstance(extra_postargs, dict):
                    extra_postargs = {**extra_postargs, "cxx": [*extra_postargs.get("cxx", []), *flags]}
                else:
                    extra_postargs = [*extra_postargs, *flags]
            return compile_one(obj, src, ext_name, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = compile_for_isa
        try:
            super().build_extension(ext)
        finally:
            self.compiler._compile = compile_one


# setuptools links the objects in sorted order, hence the numbers: baseline objects first, then ISAs
# in increasing order, because of an inline function several compile the linker keeps the first copy.
SOURCES = [
    os.path.join(CSRC, "ops.cpp"),
    os.path.join(CSRC, "cpu", "direct.cpp"),
    *(os.path.join(CSRC, "cpu", f"isa_{n}_{isa}.cpp") for n, isa in enumerate(ISA_FLAGS)),
]

# at::parallel_for is inline: without OpenMP at compile time it runs every chunk on the calling thread.
# The runtime is the libgomp torch already loaded (same soname), so there is one thread pool.
OPENMP = ["-fopenmp"] if sys.platform.startswith("linux") else []

setup(
    ext_modules=[
        CppExtension(
            "groupconv._C",
            SOURCES,
            extra_compile_args=["-O3", "-g0", "-std=c++17", *OPENMP, *(["-DGROUPCONV_X86_KERNELS"] if X86 else [])],
            extra_link_args=OPENMP,
            optional=True,  # no compiler: install without the kernels (groupconv says why when it runs)
        )
    ],
    # ninja compiles every source with one set of flags; the ISA flags need setuptools' per-file path
    cmdclass={"build_ext": BuildIsaExtension.with_options(use_ninja=False)},
)
