"""The CPU classes side by side: reads ``bench/results/latest.json`` (native) and ``latest-<class>.json`` (forced
classes, ``bench/run.py --cpu-class``) and writes ``classes.json``, ``classes.md`` (a Markdown table naming the
CPU, torch's capability and llama.cpp's build of each row) and ``classes.png``.

Each class's Penwright and llama.cpp figures come from the same run; the classes may come from different runs
(each row gives its date). Run: ``.venv/bin/python bench/classes.py`` (``make bench`` runs it last).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cpu_class

RESULTS = Path(__file__).resolve().parent / "results"
# (label, key) of the decode figures compared, in tokens/s after the first token.
DECODE = (
    ("Penwright (default int4, fast step)", "decode_tok_s"),
    ("Penwright int4", "int4_decode_tok_s"),
    ("Penwright int8", "int8_decode_tok_s"),
    ("Penwright fp32", "none_decode_tok_s"),
    ("transformers fp32 generate()", "fp32_generate_tok_s"),
    ("llama.cpp", "llama_cpp_decode_tok_s"),
)


def load_classes() -> dict[str, dict[str, object]]:
    found = {}
    for name in cpu_class.CLASSES:
        path = RESULTS / f"{cpu_class.results_stem(name)}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
    return found


def summary(name: str, figures: dict[str, object]) -> dict[str, object]:
    machine: dict[str, object] = figures.get("machine", {})  # type: ignore[assignment]
    build = figures.get("llama_cpp_build")
    build = build if isinstance(build, dict) else {}
    row: dict[str, object] = {
        "cpu_class": name,
        "cpu": machine.get("cpu"),
        "threads": machine.get("torch_threads"),
        "torch_cpu_capability": machine.get("torch_cpu_capability"),
        "llama_cpp_simd": build.get("simd"),
        "llama_cpp_version": build.get("version"),
        "date": machine.get("date"),
        "busy_machine": figures.get("busy_machine"),
    }
    for _label, key in DECODE:
        row[key] = figures.get(key)
    for key in ("vs_llama_cpp", "ttft_512_ms", "llama_cpp_ttft_512_ms", "ttft_vs_llama_cpp"):
        row[key] = figures.get(key)
    quantization = figures.get("quantization")
    if isinstance(quantization, dict):
        for mode in ("int4", "int8"):
            row[f"{mode}_perplexity_change"] = quantization.get(f"{mode}_perplexity_change")
            row[f"{mode}_decode_perplexity_change"] = quantization.get(f"{mode}_decode_perplexity_change")
    return row


def markdown(rows: list[dict[str, object]]) -> str:
    def cell(value: object) -> str:
        return "–" if value is None else str(value)

    head = ["decode tokens/s"] + [
        f"{row['cpu_class']}: {row['cpu']}, torch {cell(row['torch_cpu_capability'])}, {row['threads']} threads"
        for row in rows
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, key in DECODE:
        if key == "llama_cpp_decode_tok_s":
            versions = sorted({str(row["llama_cpp_version"]) for row in rows if row["llama_cpp_version"]})
            label = " ".join(["llama.cpp", *versions])
            values = [f"{cell(row[key])} ({cell(row['llama_cpp_simd'])} build)" for row in rows]
        else:
            values = [cell(row[key]) for row in rows]
        lines.append("| " + " | ".join([label, *values]) + " |")
    lines.append("| " + " | ".join(["Penwright / llama.cpp", *[cell(row["vs_llama_cpp"]) for row in rows]]) + " |")
    runs = [cell(row["date"]) + (" (CPU shared with other work: noisy)" if row["busy_machine"] else "") for row in rows]
    lines.append("| " + " | ".join(["run", *runs]) + " |")
    return "\n".join(lines) + "\n"


def chart(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(label, key) for label, key in DECODE if key != "int4_decode_tok_s"]
    width = 0.8 / len(rows)
    fig, axis = plt.subplots(figsize=(10, 4.5))
    for index, row in enumerate(rows):
        values = [number if isinstance(number := row[key], (int, float)) else 0.0 for _label, key in keys]
        positions = [position + index * width for position in range(len(keys))]
        bars = axis.bar(
            positions, values, width, label=f"{row['cpu_class']} (torch {row['torch_cpu_capability'] or '?'})"
        )
        axis.bar_label(bars, labels=[f"{value:.1f}" if value else "–" for value in values], fontsize=8)
    axis.set_xticks([position + width * (len(rows) - 1) / 2 for position in range(len(keys))])
    axis.set_xticklabels([label.replace(" (", "\n(").replace("Penwright ", "Penwright\n") for label, _ in keys])
    axis.tick_params(axis="x", labelsize=8)
    axis.set_title(f"Decode tokens/s by CPU class — {rows[0]['cpu']}, {rows[0]['threads']} threads")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    found = load_classes()
    if not found:
        sys.exit("classes.py: no bench/results/latest*.json yet: run make bench")
    rows = [summary(name, figures) for name, figures in found.items()]
    (RESULTS / "classes.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    table = markdown(rows)
    (RESULTS / "classes.md").write_text(table, encoding="utf-8")
    chart(rows, RESULTS / "classes.png")
    print(table)


if __name__ == "__main__":
    main()
