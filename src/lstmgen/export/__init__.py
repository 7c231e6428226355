"""lstmgen export: a run as an ONNX graph with its tokenizer and settings, or as a web folder
that generates in the browser with onnxruntime-web (no server behind it).

`export(run, out=..., format="onnx" | "web")` writes the folder whole or not at all: it is
built in a staging folder beside `out` and moved into place when complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lstmgen.describe import info
from lstmgen.errors import LstmgenError
from lstmgen.files import check_replaceable, staged, write_json

FORMATS = ("onnx", "web")
QUANTIZE = ("none", "int8")
MANIFEST = "lstmgen-model.json"
# Every name an export's folder holds: the only ones --overwrite replaces.
EXPORT_FILES = (MANIFEST, "model.onnx", "tokenizer.json")
EXPORT_FILES += ("index.html", "page.js", "bpe.js", "model.js", "ort")  # the web page's


def export(
    run: str | Path,
    *,
    out: str | Path,
    format: str = "onnx",
    checkpoint: str = "best",
    quantize: str = "none",
    overwrite: bool = False,
    runtime_dir: str | Path | None = None,
    runtime_url: str | None = None,
) -> dict:
    """Write run as `format` into the folder out; return what was written (files and sizes)."""
    run, out = Path(run), Path(out)
    if format not in FORMATS:
        raise LstmgenError(f"--format {format!r} must be one of: {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise LstmgenError(f"--quantize {quantize!r} must be one of: {', '.join(QUANTIZE)}")
    if out.exists() and not overwrite:
        raise LstmgenError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
        raise LstmgenError(f"--out {out} is inside the run {run}; choose a folder outside it")
    check_replaceable(out, kind="export", marker=MANIFEST, names=EXPORT_FILES, sources=[run])
    if not (run / "config.json").is_file():
        raise LstmgenError(f"{run} is not a run directory (it has no config.json)")
    if not (run / "model.safetensors").is_file():
        raise LstmgenError(f"{run} has no checkpoint (model.safetensors); train it first")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise LstmgenError(
            f"lstmgen export needs {error.name}: pip install 'lstmgen[export]'"
        ) from None
    from lstmgen.export.manifest import manifest
    from lstmgen.export.onnx import quantize_int8, write_onnx
    from lstmgen.export.web import check_web, write_page
    from lstmgen.inference import load

    model = load(run, checkpoint=checkpoint, device="cpu")
    if format == "web":
        runtime = check_web(model, runtime_dir, runtime_url)
    with staged(out, "export") as folder:
        graph = folder / "model.onnx"
        write_onnx(model.module, graph)
        if quantize == "int8":
            fp32 = folder / "model.fp32.onnx"
            graph.rename(fp32)
            quantize_int8(fp32, graph)
            fp32.unlink()
        shutil.copyfile(run / "tokenizer.json", folder / "tokenizer.json")
        data = manifest(model, info(run), checkpoint=checkpoint, quantize=quantize)
        write_json(folder / MANIFEST, data)
        if format == "web":
            write_page(folder, model, data, runtime=runtime, runtime_url=runtime_url)
        files = {
            str(p.relative_to(folder)): p.stat().st_size
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"
        }
    return {"out": str(out), "format": format, "quantize": quantize, "files": files}
