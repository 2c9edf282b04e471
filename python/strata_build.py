"""A PEP 517 build backend for `pip install .` (pyproject.toml, docs/python.md), offline and
with Debian's packages only (Debian 12 has no scikit-build-core): the standard library drives
CMake and writes the wheel.

build_wheel configures build/python (Release, STRATA_WITH_PYTHON on, no tests, Qt or CUDA, the
interpreter running pip) and builds the extension _strata and the `strata` executable; the
wheel holds the package's .py files, the extension, bin/strata (simulate() runs it), the
bundled specs (data/configs/) and the roofline's table (data/efficiencies.json), so the
installed package does not read the checkout. Another build folder that is already configured
with STRATA_WITH_PYTHON on (build/ci after scripts/test.sh) is reused as it is with
`--config-settings build-dir=build/ci` or STRATA_BUILD_DIR=build/ci.
"""

import base64
import hashlib
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _version():
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"project\(strata VERSION ([0-9.]+)", text).group(1)


def _run(argv):
    print("strata_build:", " ".join(str(a) for a in argv), file=sys.stderr, flush=True)
    subprocess.run([str(a) for a in argv], check=True, cwd=ROOT)


def _build(config_settings):
    given = (config_settings or {}).get("build-dir") or os.environ.get("STRATA_BUILD_DIR")
    build = (ROOT / given) if given else ROOT / "build" / "python"
    if not given:
        _run(["cmake", "-S", ROOT, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
              "-DSTRATA_WITH_PYTHON=ON", "-DBUILD_TESTING=OFF", "-DSTRATA_WITH_QT=OFF",
              "-DSTRATA_WITH_CUDA=OFF", f"-DPython_EXECUTABLE={sys.executable}"])
    elif not (build / "CMakeCache.txt").is_file():
        raise RuntimeError(f"build-dir {build}: not a configured CMake build folder")
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
    _run(["cmake", "--build", build, "--parallel", jobs, "--target", "strata", "_strata",
          "strata_python_files"])
    return build


def _tag():
    impl = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = re.sub(r"[-.]", "_", sysconfig.get_platform())
    return f"{impl}-{impl}{sys.abiflags}-{platform}"


def _files(build):
    """(name in the wheel, path on disk) of every file of the package."""
    package = build / "python" / "strata"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    extension = package / f"_strata{suffix}"
    if not extension.is_file():
        raise RuntimeError(f"{extension} was not built: is {build} configured for this "
                           f"interpreter ({sys.executable}) with STRATA_WITH_PYTHON on?")
    files = [(f"strata/{p.name}", p) for p in sorted((ROOT / "python" / "strata").glob("*.py"))]
    files.append((f"strata/{extension.name}", extension))
    files.append(("strata/bin/strata", build / "cli" / "strata"))
    files.append(("strata/data/efficiencies.json", ROOT / "profiler" / "efficiencies.json"))
    for p in sorted((ROOT / "configs").rglob("*")):
        if p.is_file():
            files.append((f"strata/data/configs/{p.relative_to(ROOT / 'configs')}", p))
    return files


def _metadata():
    return (f"Metadata-Version: 2.1\nName: strata\nVersion: {_version()}\n"
            "Summary: Plan and simulate parallel training strategies (Strata)\n"
            "Requires-Python: >=3.9\n")


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    """The wheel's .dist-info without building (pip asks for it first; without this hook it
    would build the whole wheel twice)."""
    info = Path(metadata_directory) / f"strata-{_version()}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(_metadata())
    return info.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    build = _build(config_settings)
    tag = _tag()
    name = f"strata-{_version()}-{tag}.whl"
    info = f"strata-{_version()}.dist-info"
    record = []

    def add(archive, arcname, data, mode=0o644):
        entry = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
        entry.external_attr = (0o100000 | mode) << 16
        entry.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(entry, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")

    with zipfile.ZipFile(Path(wheel_directory) / name, "w") as archive:
        for arcname, path in _files(build):
            mode = 0o755 if os.access(path, os.X_OK) and "/bin/" in arcname else 0o644
            add(archive, arcname, path.read_bytes(), mode)
        add(archive, f"{info}/METADATA", _metadata().encode())
        add(archive, f"{info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: strata_build\n"
                                       f"Root-Is-Purelib: false\nTag: {tag}\n").encode())
        add(archive, f"{info}/top_level.txt", b"strata\n")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return name


def build_sdist(sdist_directory, config_settings=None):
    """The tracked files of the checkout (git ls-files) and PKG-INFO."""
    base = f"strata-{_version()}"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    name = f"{base}.tar.gz"
    with tarfile.open(Path(sdist_directory) / name, "w:gz") as archive:
        for f in filter(None, listed):
            archive.add(ROOT / f, arcname=f"{base}/{f}", recursive=False)
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = _metadata().encode()
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return name
