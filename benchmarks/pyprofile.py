"""Python function names in callgrind's profiles, for `overhead.py --profile`.

Callgrind sees only the interpreter's C functions: every Python function runs inside
`_PyEval_EvalFrameDefault`. This module builds a small C extension (with the C compiler and
Python's headers, once per interpreter, in a temporary folder) that installs a frame
evaluation function (PEP 523) running each code object's frames through a trampoline of its
own: `pyfn_0000`, `pyfn_0001`, ... in the order they first run. Callgrind then has one
function per Python function, with calls between them, so `callgrind_annotate --inclusive=yes`
gives the inclusive count of each; `names()` says which Python function each trampoline is.

Two trampolines have fixed names, for `--toggle-collect`: code objects marked "region" run
through `bench_region` (the benchmark's outer call), those marked "sdk" through `bench_sdk`
(the SDK's own work). Counting from the region's entry to its exit, paused inside the SDK,
leaves what the instrumentation adds.

A frame evaluation function stops CPython inlining Python-to-Python calls, so profiled runs
cost more per Python call than the counted ones: the profile says where the cost goes, the
table says how much it is.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from types import CodeType, ModuleType

POOL = 4096  # trampolines for distinct Python functions; more run through `pyfn_other`

_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX >= 0x030B0000
typedef struct _PyInterpreterFrame Frame;
#else
typedef PyFrameObject Frame;
#endif
#if PY_VERSION_HEX >= 0x030C0000
#define REQUEST_EXTRA PyUnstable_Eval_RequestCodeExtraIndex
#define GET_EXTRA PyUnstable_Code_GetExtra
#define SET_EXTRA PyUnstable_Code_SetExtra
#else
#define REQUEST_EXTRA _PyEval_RequestCodeExtraIndex
#define GET_EXTRA _PyCode_GetExtra
#define SET_EXTRA _PyCode_SetExtra
#endif

typedef PyObject *(*Eval)(PyThreadState *, Frame *, int);

/* One trampoline: a real call to the default evaluation, so that callgrind sees a call (and
   no tail jump) from a function of its own name. */
#define TRAMPOLINE(name) \
    __attribute__((noinline, used)) PyObject *name(PyThreadState *t, Frame *f, int e) { \
        PyObject *r = _PyEval_EvalFrameDefault(t, f, e); \
        __asm__ volatile("" ::: "memory"); \
        return r; \
    }

@TRAMPOLINES@

static Eval table[] = {@TABLE@};
#define POOL @POOL@
#define OTHER (POOL + 1)
#define REGION (POOL + 2)
#define SDK (POOL + 3)

static Py_ssize_t extra = -1;
static PyObject *codes;  /* the code object of each pool trampoline, in order */

static PyObject *code_of(Frame *f) {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *code = PyUnstable_InterpreterFrame_GetCode(f);
    Py_XDECREF(code);  /* the frame holds it */
    return code;
#elif PY_VERSION_HEX >= 0x030B0000
    /* 3.11's _PyInterpreterFrame begins f_func, f_globals, f_builtins, f_locals, f_code. */
    return ((PyObject **)f)[4];
#else
    return (PyObject *)f->f_code;
#endif
}

static PyObject *eval(PyThreadState *t, Frame *f, int e) {
    PyObject *code = code_of(f);
    void *slot = NULL;
    if (code == NULL || GET_EXTRA(code, extra, &slot) < 0) {
        return _PyEval_EvalFrameDefault(t, f, e);
    }
    Py_ssize_t k = (Py_ssize_t)slot;
    if (k == 0) {
        Py_ssize_t n = PyList_GET_SIZE(codes);
        k = n < POOL ? n + 1 : OTHER;
        if (k != OTHER) {
            /* Appending cannot fail short of memory; an error then would hide the frame's. */
            PyObject *exc_type, *exc_value, *exc_tb;
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
            if (PyList_Append(codes, code) < 0) { PyErr_Clear(); k = OTHER; }
            PyErr_Restore(exc_type, exc_value, exc_tb);
        }
        SET_EXTRA(code, extra, (void *)k);
    }
    return table[k - 1](t, f, e);
}

static PyObject *enable(PyObject *self, PyObject *unused) {
    _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), eval);
    Py_RETURN_NONE;
}

static PyObject *disable(PyObject *self, PyObject *unused) {
    _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), _PyEval_EvalFrameDefault);
    Py_RETURN_NONE;
}

static PyObject *mark(PyObject *self, PyObject *args) {
    PyObject *code;
    const char *kind;
    if (!PyArg_ParseTuple(args, "O!s", &PyCode_Type, &code, &kind)) return NULL;
    Py_ssize_t k = strcmp(kind, "region") == 0 ? REGION : strcmp(kind, "sdk") == 0 ? SDK : 0;
    if (k == 0) return PyErr_Format(PyExc_ValueError, "kind is 'region' or 'sdk', not %s", kind);
    if (SET_EXTRA(code, extra, (void *)k) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *names(PyObject *self, PyObject *unused) {
    Py_INCREF(codes);
    return codes;
}

static PyMethodDef methods[] = {
    {"enable", enable, METH_NOARGS, "Run every frame through its trampoline."},
    {"disable", disable, METH_NOARGS, "Back to the default frame evaluation."},
    {"mark", mark, METH_VARARGS, "mark(code, 'region' | 'sdk'): a fixed trampoline."},
    {"names", names, METH_NOARGS, "The code objects of pyfn_0000, pyfn_0001, ..."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pyframes", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pyframes(void) {
    extra = REQUEST_EXTRA(NULL);
    if (extra < 0) return NULL;
    codes = PyList_New(0);
    if (codes == NULL) return NULL;
    return PyModule_Create(&module);
}
"""


def source() -> str:
    names = [f"pyfn_{i:04d}" for i in range(POOL)] + ["pyfn_other", "bench_region", "bench_sdk"]
    return (
        _SOURCE.replace("@TRAMPOLINES@", "\n".join(f"TRAMPOLINE({name})" for name in names))
        .replace("@TABLE@", ", ".join(names))
        .replace("@POOL@", str(POOL))
    )


def build() -> str:
    """The path of the compiled extension for this interpreter, built when missing."""
    text = source()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    key = hashlib.sha256(f"{text}{sys.version}{sys.executable}".encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"failsight-bench-pyframes-{key}")
    path = os.path.join(folder, f"_pyframes{suffix}")
    if os.path.exists(path):
        return path
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if compiler is None or not os.path.exists(os.path.join(include, "Python.h")):
        raise SystemExit(
            "--profile needs a C compiler (cc or gcc) and Python's headers"
            f" ({include}/Python.h) to name Python functions for callgrind"
        )
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        c_file = os.path.join(work, "_pyframes.c")
        with open(c_file, "w") as out:
            out.write(text)
        built = os.path.join(work, os.path.basename(path))
        done = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O1", "-fno-optimize-sibling-calls",
             f"-I{include}", c_file, "-o", built],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"building the profiling extension failed:\n{done.stderr}")
        os.replace(built, path)  # atomic: concurrent builds leave one whole file
    return path


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("_pyframes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def describe(code: CodeType) -> str:
    """`qualname (path:line)`, the path from the package (site-packages and the checkout cut)."""
    path = code.co_filename
    for marker in ("site-packages/", "/src/", "/benchmarks/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    name = getattr(code, "co_qualname", code.co_name)
    return f"{name} ({path}:{code.co_firstlineno})"


# callgrind_annotate's lines: `  1,234 (12.34%)  file:function [object]`.
_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+?):(\S+)(?:\s+\[.*\])?\s*$")


def inclusive(dump: str, names: list[str]) -> tuple[int, list[tuple[int, str]]]:
    """(total, [(inclusive count, Python function)]) of one callgrind dump, largest first.

    Only Python functions (the trampolines) are listed: C functions count in their callers.
    """
    done = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    total = 0
    rows: list[tuple[int, str]] = []
    for line in done.stdout.splitlines():
        if line.strip().endswith("PROGRAM TOTALS"):
            total = int(line.split()[0].replace(",", ""))
            continue
        match = _LINE.match(line)
        if not match:
            continue
        count, function = int(match.group(1).replace(",", "")), match.group(3)
        if "'" in function:  # a recursive call's deeper level (`fn'2`): inside `fn` already
            continue
        if function.startswith("pyfn_") and function != "pyfn_other":
            rows.append((count, names[int(function[5:])]))
        elif function == "pyfn_other":
            rows.append((count, "(functions beyond the trampoline pool)"))
    rows.sort(key=lambda row: -row[0])
    return total, rows
