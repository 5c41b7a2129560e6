"""`report.html`: a comparison in one self-contained file.

Settings, the command that reproduces it, the table, the learning curves with their bands,
the depth sweep, and each scheme's diagnosis at initialization with its signal-propagation
picture. Figures are embedded as base64 PNG and the style sheet is inline: the file opens
with no network access and can be mailed or archived alone.
"""
import base64
import html
import io

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
pre { background: #f7f7f7; padding: 0.75em; overflow-x: auto; font-size: 0.8em; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.error { color: #b00020; } .warning { color: #8a6d00; } .healthy { color: #1b7f3b; }
"""
_TABLE_COLUMNS = ("scheme", "depth", "at_init", "train_loss", "train_accuracy", "val_loss",
                  "val_loss_ci", "val_accuracy", "val_accuracy_ci", "target_epoch", "vs_best",
                  "seconds")


def write(result, path):
    """Writes `result` (a `Comparison` whose figures are already in `result.files`) to
    `path` as one HTML file."""
    settings = result.settings
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>initkit compare: {_e(settings['model'])}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>initkit compare: {_e(settings['model'])} on {_e(settings['data'])}</h1>",
             "<h2>Reproduce</h2>", f"<pre>{_e(result.command())}</pre>",
             "<h2>Settings</h2>", _settings_table(settings),
             "<h2>Results</h2>",
             f"<p>Means over {settings['seeds']} seed(s), &plusmn; the half-width of the 95% "
             "Student-t interval; <em>vs best</em> is a paired t-test over seeds against the "
             "best scheme at the same depth (p &lt; 0.05: worse).</p>",
             _results_table(result.rows)]
    if "depth_sweep" in result.files:
        parts += ["<h2>Depth sweep</h2>", _png_file(result.files["depth_sweep"], "depth sweep")]
    sweep = len(result.depths) > 1
    parts.append("<h2>Learning curves</h2>")
    for depth in result.depths:
        suffix = f"_depth_{depth}" if sweep else ""
        if sweep:
            parts.append(f"<h3>depth {depth}</h3>")
        parts.append(_png_file(result.files["learning_curves" + suffix],
                               f"learning curves at depth {depth}"))
        parts.append(_png_file(result.files["signal_at_init" + suffix],
                               f"signal at initialization at depth {depth}"))
    parts.append("<h2>Diagnosis at initialization</h2>")
    for key, report in result.diagnoses.items():
        verdict = "healthy" if report.healthy else "error"
        parts += [f"<h3>{_e(key)}: <span class='{verdict}'>"
                  f"{'healthy' if report.healthy else 'will not train as it stands'}</span></h3>",
                  _findings(report),
                  _img(result.pictures.get(key) or picture(report),
                       f"signal propagation of {key}"),
                  f"<details><summary>per-layer table</summary><pre>{_e(report.table())}"
                  "</pre></details>"]
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(parts))


def _e(value):
    return html.escape(str(value))


def _settings_table(settings):
    rows = "".join(f"<tr><th>{_e(k)}</th><td class='text'>{_e(v)}</td></tr>"
                   for k, v in settings.items() if v is not None)
    return f"<table>{rows}</table>"


def _results_table(rows):
    head = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in _TABLE_COLUMNS)
    body = "".join("<tr>" + "".join(_value_cell(c, row[c]) for c in _TABLE_COLUMNS) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _value_cell(column, value):
    if isinstance(value, float):
        return f"<td>{value:.4g}</td>"
    if value is None:
        return "<td>-</td>"
    return f"<td class='text'>{_e(value)}</td>"


def _findings(report):
    if not report.findings:
        return "<p class='healthy'>No finding.</p>"
    items = "".join(f"<li class='{f.severity}'><b>{_e(f.kind)}</b> ({_e(f.signal)}, "
                    f"{_e(f.severity)}) at <code>{_e(f.layer)}</code>: {_e(f.message)}</li>"
                    for f in report.findings)
    return f"<ul>{items}</ul>"


def _png_file(path, alt):
    with open(path, "rb") as file:
        return _img(file.read(), alt)


def picture(report):
    """`report.plot()` as the PNG bytes that report.html embeds."""
    buffer = io.BytesIO()
    report.plot().savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def _img(png, alt):
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
