"""The web folder: index.html, page.js and bpe.js beside model.onnx, generating in the browser with
onnxruntime-web's WebAssembly backend, no server behind it (any static file server will do).

The runtime's files are copied into `ort/` (so the page also works offline) from
`--runtime-dir`, $LSTMGEN_ONNXRUNTIME_WEB, an `npm install onnxruntime-web` under build/npm/
or node_modules/, or lstmgen's cache; where none has it and npm is at hand, lstmgen runs
`npm install --prefix CACHE onnxruntime-web@RUNTIME_VERSION` itself (it says so first). With
`--runtime-url` the page loads the runtime from there instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from lstmgen.errors import LstmgenError, say
from lstmgen.inference import Model

STATIC = Path(__file__).parent / "static"
# onnxruntime-web's WebAssembly build: its script, the module that loads the .wasm, the .wasm
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
RUNTIME_ENV = "LSTMGEN_ONNXRUNTIME_WEB"
NPM_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
REPO = Path(__file__).resolve().parents[3]  # a source checkout's root (build/npm lives there)
RUNTIME_VERSION = "1.31.1"  # the onnxruntime-web lstmgen fetches (the page is tested with it)
NPM_SECONDS = 300


def runtime_cache() -> Path:
    """Where lstmgen installs onnxruntime-web itself: the user's cache, one folder a version."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lstmgen" / f"onnxruntime-web-{RUNTIME_VERSION}"


def runtime_candidates(runtime_dir: str | Path | None) -> list[Path]:
    """Where onnxruntime-web's files are looked for, in order."""
    if runtime_dir is not None:
        return [Path(runtime_dir)]
    found = [Path(os.environ[RUNTIME_ENV])] if os.environ.get(RUNTIME_ENV) else []
    for root in (Path.cwd(), REPO):
        found += [root / "build" / "npm" / NPM_DIST, root / NPM_DIST]
    return [*found, runtime_cache() / NPM_DIST]


def find_runtime(runtime_dir: str | Path | None) -> Path | None:
    """The first folder holding onnxruntime-web's WebAssembly files, or None."""
    for folder in runtime_candidates(runtime_dir):
        if all((folder / name).is_file() for name in RUNTIME_FILES):
            return folder
    return None


def check_web(model: Model, runtime_dir, runtime_url: str | None) -> Path | None:
    """What the page needs, checked before anything is written: the level, and the runtime's
    folder (None when the page loads it from runtime_url)."""
    tokenizer = getattr(model.tokenizer, "inner", model.tokenizer)
    if tokenizer.kind == "word" and tokenizer.format != 2:
        raise LstmgenError(
            "--format web needs a word run of word format 2 (tokens keep their spacing); this "
            "run's words are format 1, whose spacing is guessed back: --format onnx exports it"
        )
    if runtime_url is not None:
        if not runtime_url.startswith(("https://", "http://")):
            raise LstmgenError(f"--runtime-url {runtime_url!r} must be an http(s):// URL")
        return None
    folder = find_runtime(runtime_dir)
    if folder is None and runtime_dir is None:
        folder = fetch_runtime()
    if folder is None:
        where = runtime_dir or "build/npm/ or node_modules/"
        raise LstmgenError(
            f"onnxruntime-web's files ({', '.join(RUNTIME_FILES)}) are not in {where}; run "
            f"`npm install --prefix build/npm onnxruntime-web@{RUNTIME_VERSION}`, or pass "
            "--runtime-dir or --runtime-url"
        )
    return folder


def fetch_runtime() -> Path:
    """onnxruntime-web installed by npm into lstmgen's cache (said before it runs)."""
    npm = shutil.which("npm")
    if npm is None:
        raise LstmgenError(
            "--format web needs onnxruntime-web, and npm (which lstmgen would fetch it with) "
            "is not installed: install Node.js (it brings npm) and export again, or pass "
            "--runtime-dir FOLDER (its dist/ files) or --runtime-url URL (e.g. a CDN)"
        )
    cache = runtime_cache()
    command = [npm, "install", "--prefix", str(cache), f"onnxruntime-web@{RUNTIME_VERSION}"]
    say(f"fetching onnxruntime-web (once, into {cache}): {' '.join(['npm', *command[1:]])}")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=NPM_SECONDS, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        done = None
    folder = cache / NPM_DIST
    if done is None or done.returncode != 0 or find_runtime(folder) is None:
        why = (
            "it took over 5 minutes"
            if done is None
            else ((done.stderr.strip().splitlines() or ["no files"])[-1])
        )
        raise LstmgenError(
            f"npm could not install onnxruntime-web ({why}); check the network and try again, "
            "or pass --runtime-dir FOLDER or --runtime-url URL (e.g. a CDN)"
        )
    return folder


def write_page(
    folder: Path, model: Model, manifest: dict, *, runtime: Path | None, runtime_url: str | None
) -> None:
    """index.html, page.js and the runtime (into ort/, unless runtime_url) into folder."""
    if runtime is not None:
        (folder / "ort").mkdir()
        for name in RUNTIME_FILES:
            shutil.copyfile(runtime / name, folder / "ort" / name)
        base = "ort/"
    else:
        base = runtime_url.rstrip("/") + "/"
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    title = f"lstmgen: {model.run_dir.name if model.run_dir else 'model'}"
    html = html.replace("{{TITLE}}", _escape(title)).replace("{{RUNTIME}}", _escape(base))
    (folder / "index.html").write_text(html, encoding="utf-8")
    for script in ("page.js", "bpe.js"):
        shutil.copyfile(STATIC / script, folder / script)
    # the manifest again as a script: the page also reads it where fetch() of JSON is refused
    script = "window.LSTMGEN_MODEL = " + json.dumps(manifest, ensure_ascii=True) + ";\n"
    (folder / "model.js").write_text(script, encoding="utf-8")


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
