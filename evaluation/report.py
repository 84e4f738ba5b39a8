"""report.html: every judged image with its boxes, verdict and reason, filterable and sortable.

Self-contained (inline CSS and JS, images referenced by relative path, no
network); boxes are drawn as SVG over the images so the PNGs stay untouched.
"""

from __future__ import annotations

import html
import io
import zipfile
from pathlib import Path

from evaluation.judge import JudgeRules, describe_rules, merge_detections
from evaluation.runner import read_rows
from evaluation.summary import describe_agreement, markdown_table

BOX_COLORS = {"cat": "#ff4040", "dog": "#4080ff", "face": "#ffd200"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table.sum{border-collapse:collapse;margin-bottom:1em}table.sum td,table.sum th{border:1px solid #ccc;padding:.2em .6em}
#grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:210px;border:3px solid #ccc;border-radius:6px;padding:4px;font-size:12px}
.card.pass{border-color:#2a2}.card.fail{border-color:#d33}
.pic{position:relative;width:200px;height:200px}.pic img,.pic svg{position:absolute;left:0;top:0;width:200px;height:200px}
.pic img{image-rendering:pixelated}.verdict{font-weight:bold}.pass .verdict{color:#2a2}.fail .verdict{color:#d33}
.controls{margin:.8em 0}
"""

_SCRIPT = """
function apply(){
  const cat=document.getElementById('cat').value, only=document.getElementById('only').value,
        key=document.getElementById('sort').value, grid=document.getElementById('grid');
  const cards=[...grid.children];
  const cmp=(x,y)=>x<y?-1:x>y?1:0;
  cards.sort((a,b)=>(key==='order'?0:cmp(a.dataset[key],b.dataset[key]))||(+a.dataset.order)-(+b.dataset.order));
  for(const c of cards){grid.appendChild(c);
    c.style.display=((cat==='all'||c.dataset.category===cat)&&(only==='all'||c.dataset.result===only))?'':'none';}
}
"""


def _svg(row: dict, rules: JudgeRules) -> str:
    """The boxes the judge counted (merged by the run's rules, as the app draws them), over the image."""
    w, h = (float(v) for v in row["size"])  # numbers: nothing of the row goes into the page unescaped
    parts = [f'<svg viewBox="0 0 {w} {h}" preserveAspectRatio="none">']
    for d in merge_detections(row["detections"], rules):
        x1, y1, x2, y2 = d.box
        color = BOX_COLORS.get(d.label, "#fff")
        parts.append(f'<rect x="{x1}" y="{y1}" width="{x2 - x1}" height="{y2 - y1}" fill="none" '
                     f'stroke="{color}" stroke-width="{max(1, w / 128):.2f}"><title>{html.escape(d.label)} '
                     f'{d.confidence:.2f}</title></rect>')
        parts.append(f'<text x="{x1 + 1}" y="{max(y1 - 1, 7)}" font-size="{max(7, w / 16):.1f}" fill="{color}">'
                     f'{html.escape(d.label)} {d.confidence:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _card(order: int, row: dict, rules: JudgeRules) -> str:
    result = "pass" if row["passed"] else "fail"
    esc = html.escape
    return (f'<div class="card {result}" data-category="{esc(row["category"])}" data-result="{result}" '
            f'data-prompt="{esc(row["prompt"])}" data-order="{order}">'
            f'<div class="pic"><img src="{esc(row["image"])}" alt="{esc(row["prompt"])}">{_svg(row, rules)}</div>'
            f'<div><b>{esc(row["prompt"])}</b> <span title="seed">#{int(row["seed"])}</span></div>'
            f'<div>{esc(row["category"])} &middot; expects {esc(row.get("expect", ""))}</div>'
            f'<div class="verdict">{result.upper()}</div><div>{esc(row["reason"])}</div></div>')


def _summary_html(summary: dict) -> str:
    rows = [("overall", summary["overall"]), *summary["categories"].items()]
    body = "".join(f"<tr><td>{html.escape(n)}</td><td>{b['accuracy']:.3f}</td>"
                   f"<td>{b['ci95'][0]:.3f} - {b['ci95'][1]:.3f}</td><td>{b['n']}</td></tr>" for n, b in rows)
    return ('<table class="sum"><tr><th>category</th><th>accuracy</th><th>95% CI</th>'
            f"<th>images</th></tr>{body}</table>")


def render_report(rows: list[dict], summary: dict, title: str = "gendet evaluation") -> str:
    cats = sorted({r["category"] for r in rows})
    options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in cats)
    rules = describe_rules(summary.get("judge", {}))
    counted_by = JudgeRules.from_dict(summary.get("judge") or {})  # the rules the run recorded
    validation = summary.get("judge_validation")
    on = summary.get("judge_validation_on")
    val_line = (f"<p>Judge agreement with ground truth: {html.escape(describe_agreement(validation))}"
                f"{html.escape(f' (on {on})') if on else ''}</p>" if validation else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
            f"<h1>{html.escape(title)}: {html.escape(str(summary.get('suite', '')))}</h1>"
            f"{_summary_html(summary)}<p>Judge rules: {html.escape(rules)}</p>{val_line}"
            "<div class='controls'>category <select id='cat' onchange='apply()'><option value='all'>all</option>"
            f"{options}</select> show <select id='only' onchange='apply()'><option value='all'>all</option>"
            "<option value='pass'>pass</option><option value='fail'>fail</option></select> sort by "
            "<select id='sort' onchange='apply()'><option value='order'>suite order</option>"
            "<option value='category'>category</option><option value='result'>result</option>"
            "<option value='prompt'>prompt</option></select></div>"
            f"<div id='grid'>{''.join(_card(i, r, counted_by) for i, r in enumerate(rows))}</div></body></html>")


def write_report(out: Path, rows: list[dict], summary: dict) -> Path:
    path = Path(out) / "report.html"
    for name, text in (("report.html", render_report(rows, summary)), ("summary.md", markdown_table(summary) + "\n")):
        tmp = path.with_name(f"{name}.tmp")  # whole or not at all, even when killed mid-write
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path.with_name(name))
    return path


# what a finished run folder holds besides its images
RUN_FILES = ("report.html", "summary.json", "summary.csv", "summary.md", "results.jsonl", "run.json",
             "suite.yaml", "judge_validation.json")


def report_archive(run: Path) -> bytes:
    """A zip of the run's report and every image it shows, under the run folder's name: report.html
    refers to its images by relative path, so the page alone would show none of them."""
    run = Path(run)
    rows = read_rows(run / "results.jsonl")
    names = [n for n in RUN_FILES if (run / n).is_file()] + sorted({r["image"] for r in rows})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in names:
            # PNGs are compressed already; deflating them again costs time and saves nothing
            kind = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            z.write(run / name, f"{run.name}/{name}", compress_type=kind)
    return buf.getvalue()
