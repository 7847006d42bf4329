"""Build a single-file executable of discord-mirai-relay with the standard library's ``zipapp``.

    python scripts/build_zipapp.py                    # → dist/discord-mirai-relay.pyz
    python scripts/build_zipapp.py -o /tmp/relay.pyz
    ./dist/discord-mirai-relay.pyz --version

The project and its dependencies are installed with pip into a temporary folder, which becomes the archive; the
package data (the sandbox's chat page) comes along, and the build fails if it did not.
zipimport cannot load native extensions, so they are left out: tomli keeps pure-Python sources beside its
compiled ones, and orjson (the fast JSON of the per-event paths) is replaced by the standard library
(``relay/fastjson.py``), which is slower but gives the same results. The archive runs on any machine with a
compatible Python 3 (the one given by ``--python``, default ``/usr/bin/env python3``). Needs pip and access to
the package index for the dependencies.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINT = "relay.cli:console_main"  # the same function as the console script in pyproject.toml
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")
#: package data the archive must carry (pyproject.toml's [tool.setuptools.package-data]): the sandbox's chat page,
#: read with importlib.resources, which reads from inside the archive too
PACKAGE_DATA = (
    "relay/sandbox/static/index.html",
    "relay/sandbox/static/page.css",
    "relay/sandbox/static/page.js",
)


def build(output: Path, interpreter: str) -> Path:
    with tempfile.TemporaryDirectory(prefix="relay-zipapp-") as tmp:
        target = Path(tmp) / "app"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",  # .pyc files are version-specific; zipimport compiles in memory
                "--target",
                str(target),
                str(ROOT),
            ],
            check=True,
        )
        # Console-script wrappers are useless inside the archive; caches are machine-specific.
        shutil.rmtree(target / "bin", ignore_errors=True)
        for cache in list(target.rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)
        # zipimport cannot load native extensions; packages that ship optional compiled speed-ups keep
        # their pure-Python sources next to them, and those are what runs from the archive.
        missing = [name for name in PACKAGE_DATA if not (target / name).is_file()]
        if missing:
            raise FileNotFoundError(f"the install left out package data: {', '.join(missing)} (see pyproject.toml)")
        native = sorted(p for p in target.rglob("*") if p.suffix in NATIVE_SUFFIXES)
        for path in native:
            print(f"note: leaving out native extension {path.relative_to(target)} (zipimport cannot load it)")
            path.unlink()
        output.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(target, output, interpreter=interpreter, main=ENTRY_POINT, compressed=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build dist/discord-mirai-relay.pyz, a single-file executable.")
    parser.add_argument(
        "-o", "--output", type=Path, default=ROOT / "dist" / "discord-mirai-relay.pyz", help="archive to write"
    )
    parser.add_argument(
        "--python", default="/usr/bin/env python3", help="interpreter line of the archive (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        path = build(args.output, args.python)
    except subprocess.CalledProcessError as exc:
        print(f"error: pip failed with exit code {exc.returncode}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = path.stat().st_size
    print(f"built {path} ({size / 1024 / 1024:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
