"""Numba's on-disk cache, made to notice edits to any kernel source, not just a function's own file.

Numba keys a cached function on the content of its own source file only. A compiled caller holds
its callees' machine code, so when a callee's file changes and the caller's does not (an edit here,
or an upgrade of fastbp that leaves the caller's file as it was), the stale caller keeps loading:
this happened to a test calling blas.gemm_nn after gemm_nn changed (the old code ran, the new one
did not even compile for that test's arguments). The locators below add a hash of every kernel
source (KERNEL_SOURCES) to the stamp of the functions defined in fastbp and in its repository's
tests and bench folders, so any change to a kernel source recompiles all of them once.
Functions elsewhere (the user's own Numba code) keep Numba's usual locators.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import tempfile

from numba.core import caching

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ROOT = os.path.dirname(PACKAGE)


def kernel_sources() -> list[str]:
    """The files whose content every cached fastbp function depends on: the kernels, the
    scikit-learn kernels, and the settings that choose the compile flags."""
    files = glob.glob(os.path.join(PACKAGE, "_kernels", "**", "*.py"), recursive=True)
    files += [os.path.join(PACKAGE, "sklearn.py"), os.path.join(PACKAGE, "config.py")]
    return sorted(files)


@functools.cache
def kernel_sources_stamp() -> str:
    digest = hashlib.sha256()
    for path in kernel_sources():
        digest.update(os.path.relpath(path, PACKAGE).encode())
        with open(path, "rb") as source:
            digest.update(source.read())
    return digest.hexdigest()


@functools.cache
def _covered(py_file: str) -> bool:
    """Functions in fastbp itself, and in the tests and benchmarks of a source checkout."""
    path = os.path.abspath(py_file)
    folders = [PACKAGE]
    if os.path.exists(os.path.join(_ROOT, "pyproject.toml")):
        folders += [os.path.join(_ROOT, "tests"), os.path.join(_ROOT, "bench")]
    return any(path.startswith(folder + os.sep) for folder in folders)


# Cache folders a file was written to in this process. Numba proves a folder writable by creating
# and deleting a file in it, for every decorated function: over a hundred times at import, into two folders.
_PROVEN_WRITABLE: set[str] = set()


class _KernelSourcesStamp:
    def get_source_stamp(self):
        return (super().get_source_stamp(), kernel_sources_stamp())

    def ensure_cache_path(self):
        """Numba's, with the test file written once per folder (raises OSError where unusable)."""
        path = self.get_cache_path()
        os.makedirs(path, exist_ok=True)  # every time: Numba calls this again before each save
        if path not in _PROVEN_WRITABLE:
            tempfile.TemporaryFile(dir=path).close()
            _PROVEN_WRITABLE.add(path)

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _covered(py_file):
            return None
        locator = super().from_function(py_func, py_file)
        if locator is not None and not os.path.abspath(py_file).startswith(PACKAGE + os.sep):
            locator._module = py_func.__module__
        return locator

    def get_disambiguator(self):
        """Numba's (the line number), and for a script of the tests or bench folders the name of
        the module it was loaded as. Numba's cached code names that module and imports it again to
        load: a bench script cached when a test loaded it as `fastbp_bench_x` then failed to run as
        `python bench/x.py` (ModuleNotFoundError), and the other way round would load the script's
        globals from the wrong module. fastbp's own modules have one name each."""
        module = getattr(self, "_module", None)
        return super().get_disambiguator() + (f"-{module}" if module else "")


class UserProvidedLocator(_KernelSourcesStamp, caching.UserProvidedCacheLocator):
    """NUMBA_CACHE_DIR, when set, with the kernel sources in the stamp."""


class InTreeLocator(_KernelSourcesStamp, caching.InTreeCacheLocator):
    """The __pycache__ folder beside the source, with the kernel sources in the stamp."""


def install() -> None:
    """Put fastbp's locators first in Numba's list (once), before any fastbp function is decorated."""
    locators = caching.CacheImpl._locator_classes
    for locator in (InTreeLocator, UserProvidedLocator):  # UserProvided ends up first, as in Numba
        if locator not in locators:
            locators.insert(0, locator)


def will_compile(dispatcher, args) -> bool:
    """Whether calling `dispatcher` with `args` compiles: no version for their types in memory, and
    none in Numba's cache (its index is read, nothing is loaded). For a notice before a long first
    call; False where that cannot be told (no JIT, or Numba's internals have moved)."""
    try:
        signature = tuple(dispatcher.typeof_pyval(arg) for arg in args)
        if signature in dispatcher.overloads:
            return False
        cache = dispatcher._cache
        if not hasattr(cache, "_cache_file"):  # caching off: nothing on disk to load
            return True
        key = cache._index_key(signature, dispatcher.targetctx.codegen())
        return key not in cache._cache_file._load_index()
    except Exception:
        return False
