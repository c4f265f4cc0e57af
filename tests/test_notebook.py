"""The example notebook, executed headless (nbclient) against the test stack: search,
plan, analyse in the kernel's process and through the deployment."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append(out["text"])
        data = out.get("data", {})
        parts.append(data.get("text/html", "") + data.get("text/plain", ""))
    return "\n".join(parts)


def test_a_filtered_search_exports_only_its_rows(catalog):
    import proxima

    px = proxima.connect()
    found = px.search(variable="air_temperature", start="2020-01-01", end="2020-04-30")
    assert set(found["region"]) == {"us-east-1", "us-west-2"}
    east = found[found["region"] == "us-east-1"]
    datastore = east.to_intake_esm()
    assert set(datastore.df["region"]) == {"us-east-1"}
    assert len(datastore.df) == len(east)  # one variable per ERA5 file


def test_the_example_notebook_runs_headless(deployed, tmp_path):
    notebook = nbformat.read(ROOT / "examples" / "proxima.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    ).execute()
    nbformat.write(notebook, tmp_path / "executed.ipynb")
    code = [c for c in notebook.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    connect, found, esm, plan, monthly, figures, submitted, subset, refused = (
        _text(c) for c in code
    )
    assert "Proxima(regions=['us-east-1', 'us-west-2']" in connect
    assert "us-east-1" in found and "us-west-2" in found
    assert "proxima catalog with" in esm
    assert "<table" in plan and "crossing regions" in plan and "us-west-2" in plan
    assert "air_temperature_at_2_metres" in monthly and "month: 4" in monthly
    assert "mean of" in figures and "time: area: mean" in figures and "degC" in figures
    assert "coverage complete" in figures
    series = [line.split() for line in figures.splitlines() if line[:1].isdigit()]
    assert [row[0] for row in series] == ["1", "2", "3", "4"]
    assert (
        "analyze-us-east-1: Completed" in submitted and "analyze-us-west-2: Completed" in submitted
    )
    assert submitted.strip().endswith("True")
    assert " blocks, " in submitted and " MB read" in submitted  # per-region progress
    assert "(time: 5, lat: 4, lon: 2)" in subset and "daily means" in subset
    assert "above max_transfer_bytes 4,000" in refused and '"coarsen": {"time":"day"}' in refused
