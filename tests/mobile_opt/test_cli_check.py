"""`mobile-opt check`: exit codes, formats and GitHub Actions output, on real .tflite files."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from mobile_opt import _tf
from mobile_opt.cli import cli


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project dir with models/a.tflite (8->16->4 MLP, 192 MACs) and a pyproject with budgets."""
    tf, keras = _tf.tf(), _tf.keras()
    root = tmp_path_factory.mktemp("check_project")
    (root / "models").mkdir()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(16, "relu"), keras.layers.Dense(4)])
    (root / "models" / "a.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    (root / "pyproject.toml").write_text(
        '[[tool.mobile-opt.budget]]\npath = "models/*.tflite"\nmax_raw = "1MB"\nmax_macs = "1K"\n'
    )
    (root / "over.toml").write_text('[[tool.mobile-opt.budget]]\npath = "models/*.tflite"\nmax_coded = "100B"\n')
    (root / "empty_glob.toml").write_text('[[tool.mobile-opt.budget]]\npath = "release/*.tflite"\nmax_raw = "1MB"\n')
    return root


@pytest.fixture
def run(monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)

    def invoke(*args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        return CliRunner().invoke(cli, ["check", *map(str, args)])

    return invoke


def test_within_budget_exits_0(project, run):
    result = run(project / "models" / "a.tflite", "--max-raw", "1MB", "--max-coded", "500KiB", "--max-macs", "1K")
    assert result.exit_code == 0, result.output
    assert "all budgets held" in result.output


def test_raw_and_zip_limits_from_flags_and_pyproject(project, run, tmp_path):
    from converters.size import analyze

    model = project / "models" / "a.tflite"
    size = analyze(model)
    assert run(model, "--max-raw", str(size.raw_bytes), "--max-zip", str(size.zip_bytes)).exit_code == 0
    over = run(model, "--max-raw", str(size.raw_bytes), "--max-zip", str(size.zip_bytes - 1), "--json")
    assert over.exit_code == 1
    assert [(r["metric"], r["actual"], r["ok"]) for r in json.loads(over.output)["results"]] == [
        ("raw_bytes", size.raw_bytes, True), ("zip_bytes", size.zip_bytes, False)]
    config = tmp_path / "pyproject.toml"
    config.write_text(f'[[tool.mobile-opt.budget]]\npath = "{model.as_posix()}"\n'
                      f'max_raw = {size.raw_bytes - 1}\nmax_zip = "{size.zip_bytes}B"\n')
    from_config = run("--config", config, "--json")
    assert from_config.exit_code == 1
    assert [(r["metric"], r["ok"]) for r in json.loads(from_config.output)["results"]] == [
        ("raw_bytes", False), ("zip_bytes", True)]


def test_over_budget_exits_1(project, run):
    size = os.path.getsize(project / "models" / "a.tflite")
    result = run(project / "models" / "a.tflite", "--max-raw", str(size - 1))
    assert result.exit_code == 1
    assert "OVER" in result.output and "1 budget check(s) failed" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-raw", "1 parsec"], "Unknown unit 'parsec'"),
        (["--max-macs", "1KiB"], "Unknown unit 'KiB'"),
        ([], "Give limits"),  # a PATH without limits needs a config, and it is missing
    ],
)
def test_input_errors_exit_2(project, run, args, message, tmp_path):
    result = run(project / "models" / "a.tflite", *args, "--config", tmp_path / "missing.toml")
    assert result.exit_code == 2
    if message:
        assert message in result.output


def test_usage_errors_exit_2(project, run, tmp_path):
    assert run("--max-raw", "1MB").exit_code == 2  # limits without PATHS
    assert run("--format", "xml").exit_code == 2
    (tmp_path / "junk.tflite").write_bytes(b"junk" * 10)
    bad = run(tmp_path / "junk.tflite", "--max-raw", "1MB")
    assert bad.exit_code == 2 and "junk.tflite" in bad.output
    missing_config = run("--config", tmp_path / "nope.toml")
    assert missing_config.exit_code == 2 and "Config file not found" in missing_config.output


def test_a_missing_file_is_an_input_error(project, run):
    for args in (["missing.tflite", "--max-coded", "50KB"], ["missing.tflite"], ["models"]):
        result = run(*args, cwd=project)
        assert result.exit_code == 2, result.output
        assert "give .tflite files" in result.output and "Traceback" not in result.output


def test_config_budgets_relative_to_config_dir(project, run, tmp_path):
    ok = run("--config", project / "pyproject.toml", cwd=tmp_path)  # globs resolve from the config's dir
    assert ok.exit_code == 0, ok.output
    assert run("--config", project / "over.toml").exit_code == 1
    empty = run("--config", project / "empty_glob.toml")
    assert empty.exit_code == 1 and "NO MATCH" in empty.output


def test_paths_pick_matching_config_budgets(project, run):
    matched = run("models/a.tflite", cwd=project)  # default --config pyproject.toml in cwd
    assert matched.exit_code == 0, matched.output
    (project / "other.tflite").write_bytes((project / "models" / "a.tflite").read_bytes())
    unmatched = run("other.tflite", "--config", "pyproject.toml", cwd=project)
    assert unmatched.exit_code == 2 and "No budget in pyproject.toml applies" in unmatched.output


@pytest.mark.parametrize("flags", [["--format", "json"], ["--json"]])
def test_json_format(project, run, flags):
    result = run("--config", project / "pyproject.toml", *flags)
    data = json.loads(result.output)
    assert data["ok"] is True
    assert [(r["path"], r["metric"]) for r in data["results"]] == [("models/a.tflite", "raw_bytes"),
                                                                   ("models/a.tflite", "macs")]
    assert data["results"][1]["actual"] == 8 * 16 + 16 * 4


def test_junit_format_and_output_file(project, run, tmp_path):
    out = tmp_path / "budgets.xml"
    result = run(project / "models" / "a.tflite", "--max-raw", "10B", "--max-macs", "1M", "--format", "junit",
                 "--output", out)
    assert result.exit_code == 1
    assert "OVER" in result.output  # the table still reaches the terminal
    suite = ET.parse(out).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["raw", "MACs"]
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert cases[0].find("failure") is not None and cases[1].find("failure") is None
    assert "raw size" in cases[0].find("failure").get("message")
    stdout_xml = run(project / "models" / "a.tflite", "--max-raw", "10B", "--format", "junit")
    assert ET.fromstring(stdout_xml.output.split("\n", 1)[1]).tag == "testsuites"


def test_github_actions_annotations_and_summary(project, run, monkeypatch, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run("models/a.tflite", "--max-raw", "10B", "--max-macs", "1M", cwd=project)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("::error")]
    assert errors == [errors[0]] and errors[0].startswith("::error file=models/a.tflite,title=mobile-opt budget::")
    assert "raw size" in errors[0] and "> 10 B" in errors[0]
    text = summary.read_text()
    assert text.startswith("previous step\n")  # appended, not overwritten
    assert "| `models/a.tflite` | raw |" in text and "❌ over" in text and "✅ ok" in text
    as_json = run("models/a.tflite", "--max-raw", "10B", "--format", "json", cwd=project)
    assert json.loads(as_json.stdout)["ok"] is False  # annotations on stderr, stdout is the JSON
    assert as_json.stderr.startswith("::error file=models/a.tflite,")
    monkeypatch.setenv("GITHUB_ACTIONS", "false")
    quiet = run("models/a.tflite", "--max-raw", "10B", cwd=project)
    assert "::error" not in quiet.output


def test_github_annotations_name_paths_from_the_repository_root(project, run, monkeypatch, tmp_path):
    """check --config ml/pyproject.toml: the annotation says ml/models/x.tflite, where the file is."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(project.parent))
    result = run("--config", f"{project.name}/over.toml", cwd=project.parent)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("::error")]
    assert errors and errors[0].startswith(f"::error file={project.name}/models/a.tflite,")
