"""The report of one ``ftx run``: Markdown, and the same page as self-contained HTML (images inlined).

One Markdown source is written first; the HTML is that Markdown rendered by
the ``markdown`` package with every image embedded as a data URI, so the page
can be mailed or attached to a ticket and still shows its plots.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import time
from pathlib import Path

from benchmarks.run_config import STAGES, PipelineConfig
from training.atomic import write_text

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}code,pre{background:#f6f8fa}
pre{padding:.8em;overflow-x:auto}h1{border-bottom:2px solid #333}h2{border-bottom:1px solid #ccc;margin-top:2em}
.scroll{overflow-x:auto;max-width:100%}.scroll table{margin:0}p,li{overflow-wrap:anywhere}"""


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(value) -> str:
        return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows), ""]


def _image(out: Path, path: Path, title: str) -> list[str]:
    return [f"![{title}]({path.relative_to(out).as_posix()})", ""] if path.is_file() else []


def _training(out: Path, config: PipelineConfig, record) -> list[str]:
    lines = ["## Training", ""]
    if record is None:
        return lines + ["Not run.", ""]
    run_dir = Path(record.outputs["run_dir_path"])
    train = config.train.resolved()
    epochs = (f"{train.epochs} head + {train.fine_tune_epochs} fine-tuning epochs"
              if train.strategy in ("two-phase", "lp-ft") else f"{train.epochs} epochs")
    lines += [f"`{train.backbone}`, strategy `{train.strategy}`, {epochs}, batch {train.batch_size}, "
              f"data `{train.data}`; run directory `{run_dir}`.", ""]
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    rows = [[split, f"{m['accuracy']:.4f}", m.get("count")] for split in ("validation", "test")
            if (m := metrics.get(split))]
    lines += _table(["split", "accuracy", "images"], rows) if rows else []
    split = "test" if (run_dir / "plots" / "confusion_test.png").is_file() else "validation"
    for name, title in (("history.png", "training curves"), (f"confusion_{split}.png", f"confusion matrix ({split})"),
                        (f"predictions_{split}.png", f"predictions ({split})"),
                        (f"worst_{split}.png", f"most confident mistakes ({split})")):
        lines += [f"### {title[0].upper() + title[1:]}", ""] + _image(out, run_dir / "plots" / name, title)
    return lines


def _export(record) -> list[str]:
    lines = ["## Export and parity gate", ""]
    if record is None:
        return lines + ["Not run.", ""]
    version_dir = Path(record.outputs["version_dir_path"])
    lines += [f"Version {record.outputs['version']} at `{version_dir}`: **{record.summary}**.", ""]
    manifest_path = version_dir / "export_manifest.json"
    if not manifest_path.is_file():
        return lines
    manifest = json.loads(manifest_path.read_text())
    parity = manifest.get("parity", {})
    rows = []
    for name, artifact in manifest.get("artifacts", {}).items():
        result = parity.get("formats", {}).get(name)
        if result is None:
            rows.append([name, f"{artifact['bytes'] / 1e6:.2f} MB", "", "", "", artifact.get("error") or "FAILED"])
            continue
        rows.append([name, f"{artifact['bytes'] / 1e6:.2f} MB", f"{result['max_abs_diff']:.1e}",
                     f"{result['top1_agreement']:.4f}", f"{result['accuracy']:.4f}",
                     "pass" if result["passed"] else "FAIL: " + "; ".join(result["failures"])])
    lines += [f"Parity on {parity.get('images')} {parity.get('split', 'test')} images against the Keras model.", ""]
    lines += _table(["format", "size", "max abs dp", "top-1 agreement", "accuracy", "gate"], rows)
    return lines


def _smoke(record) -> list[str]:
    lines = ["## Serving smoke test", ""]
    if record is None or not record.outputs.get("result_path"):
        return lines + [record.summary if record else "Not run.", ""]
    result = json.loads(Path(record.outputs["result_path"]).read_text())
    lines += [f"`ftx serve` ({result['backend']} backend) on 127.0.0.1, {result['images']} "
              f"{result.get('split', 'test')} images, "
              f"{result['seconds']} s in all.", ""]
    return lines + _table(["check", "result", "detail", "ms"],
                          [[c["check"], "pass" if c["passed"] else "FAIL", c["detail"], c["ms"]]
                           for c in result["checks"]])


def _bench(out: Path, record) -> list[str]:
    lines = ["## Benchmarks", ""]
    if record is None:
        return lines + ["Not run.", ""]
    report_dir = Path(record.outputs["report_dir_path"])
    summary = (report_dir / "summary.md").read_text().splitlines()
    prefix = report_dir.relative_to(out).as_posix() if report_dir.is_relative_to(out) else report_dir.as_posix()
    for line in summary[1:]:  # its title is this section's
        line = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", line)
        line = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", rf"![\1]({prefix}/\2)", line)
        lines.append(line)
    return lines + [""]


def _serve_commands(config: PipelineConfig, export_record) -> list[str]:
    if export_record is None or not export_record.outputs.get("published"):
        return []
    base = Path(export_record.outputs["version_dir_path"]).parent
    name = config.export.name
    root = shlex.quote(str(base.parent))
    return ["## Serve this export", "", "With TensorFlow Serving (configs from `ftx serving-config`):", "", "```bash",
            f"ftx serving-config {root} --name {name} --base-path /models",
            f"docker run --rm -p 8500:8500 -p 8501:8501 -v {root}:/models tensorflow/serving \\",
            "  --port=8500 --rest_api_port=8501 --model_config_file=/models/models.config \\",
            "  --enable_batching=true --batching_parameters_file=/models/batching.config", "```", "",
            "With `ftx serve` (ONNX Runtime, same gRPC and REST API):", "", "```bash",
            f"ftx serve --port=8500 --rest_api_port=8501 --model_name={name} "
            f"--model_base_path={shlex.quote(str(base))}",
            f"ftx client predict IMAGE.png --model {name} --server 127.0.0.1:8500",
            f"curl -s localhost:8501/v1/models/{name}", "```", ""]


def markdown_report(out: Path, config: PipelineConfig, records: dict) -> str:
    lines = [f"# ftx run: {config.run.name}", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; pipeline directory `{out}`; "
             "resolved config in `config.toml`.", "", "## Stages", ""]
    lines += _table(["stage", "status", "seconds", "result"],
                    [[stage, records[stage].status, records[stage].seconds, records[stage].summary]
                     if stage in records else [stage, "not run", "", ""] for stage in STAGES if stage != "report"])
    lines += _training(out, config, records.get("train"))
    lines += _export(records.get("export"))
    lines += _smoke(records.get("serve"))
    lines += _bench(out, records.get("bench"))
    lines += _serve_commands(config, records.get("export"))
    return "\n".join(lines) + "\n"


def html_page(markdown_text: str, out: Path, title: str) -> str:
    """Render the Markdown and inline every local PNG so the page stands alone."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])

    def inline(match: re.Match) -> str:
        path = out / match.group(2)
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'{match.group(1)}data:image/png;base64,{data}"'

    body = re.sub(r'(<img [^>]*src=")([^":]+\.png)"', inline, body)
    # a wide table scrolls inside its own box instead of widening the page (16 columns at 900 px)
    body = re.sub(r"<table>.*?</table>", lambda m: f'<div class="scroll">{m.group(0)}</div>', body, flags=re.S)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_report(out: Path, config: PipelineConfig, records: dict) -> tuple[Path, Path]:
    text = markdown_report(out, config, records)
    markdown_path = write_text(out / "report.md", text)
    html_path = write_text(out / "report.html", html_page(text, out, f"ftx run: {config.run.name}"))
    return html_path, markdown_path
