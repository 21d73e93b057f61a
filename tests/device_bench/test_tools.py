"""device_bench.tools against an HTTP server on 127.0.0.1 (no outside network).

The served "good" binaries are real files: /bin/bash (an x86-64 ELF, installed for the
x86_64 ABI without a device), and the loopback device's own `benchmark_model` (a `#!/bin/sh`
wrapper written by `fake_benchmark_model.install`), which passes only because the device
runs its `--help` and lists `--graph`; it is recorded as kind="script", never as a checked ELF.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from device_bench import ToolSettings, connect
from device_bench.binary import prepare_binary
from device_bench.testing.fake_benchmark_model import install
from device_bench.tools import ensure_binary, install_binary, list_binaries, source_url
from mobile_opt.cli import cli
from mobile_opt.errors import BenchmarkError, InputError

BASH = Path("/bin/bash")


class _Server:
    """Serves `files[path] = bytes`; `/cut/<path>` promises the whole file and sends half;
    `/stall/<path>` sends headers, then waits until the test ends; anything else is 404."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.hits.append(self.path)
                mode, _, name = self.path.lstrip("/").partition("/")
                body = server.files.get("/" + name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "cut":
                    self.wfile.write(body[: len(body) // 2])
                elif mode == "stall":
                    self.wfile.flush()
                    server.release.wait(120)
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture
def fake_tool(tmp_path) -> bytes:
    return install(tmp_path / "fake-src", abi="arm64-v8a").read_bytes()


def cache_is_empty(cache: Path) -> bool:
    """A failed install leaves nothing: not a file, not the directories it would have made."""
    return not cache.exists()


def test_good_elf_is_cached_recorded_and_reused(server, tmp_path):
    server.files["/bin/android_x86_64_benchmark_model"] = BASH.read_bytes()
    cache = tmp_path / "cache"
    binary = ensure_binary("x86_64", cache_dir=cache, base_url=f"{server.base}/ok/bin")
    assert binary == cache / "x86_64" / "benchmark_model"
    assert binary.read_bytes() == BASH.read_bytes()
    record = json.loads((binary.parent / "benchmark_model.json").read_text())
    assert record["sha256"] == hashlib.sha256(BASH.read_bytes()).hexdigest()
    assert record["source"] == f"{server.base}/ok/bin/android_x86_64_benchmark_model"
    assert record["kind"] == "elf" and record["device_check"] is None
    assert ensure_binary("x86_64", cache_dir=cache, base_url=f"{server.base}/ok/bin") == binary
    assert len(server.hits) == 1  # reused, not fetched again
    (listed,) = list_binaries(cache)
    assert listed.sha256 == record["sha256"] and listed.source == record["source"]
    assert sorted(p.name for p in binary.parent.iterdir()) == ["benchmark_model", "benchmark_model.json"]


def test_cut_connection_never_lands_in_the_cache(server, tmp_path):
    server.files["/f"] = BASH.read_bytes()
    cache = tmp_path / "cache"
    with pytest.raises(BenchmarkError) as err:
        install_binary("x86_64", source=f"{server.base}/cut/f", cache_dir=cache)
    assert "/cut/f" in str(err.value) and str(cache / "x86_64" / "benchmark_model") in str(err.value)
    assert cache_is_empty(cache)


def test_truncated_elf_is_refused(server, tmp_path):
    server.files["/f"] = BASH.read_bytes()[: 700_000]
    cache = tmp_path / "cache"
    with pytest.raises(BenchmarkError, match=r"700000 bytes, but its ELF header says it spans 1\d+ bytes \(truncated\)"):
        install_binary("x86_64", source=f"{server.base}/ok/f", cache_dir=cache)
    assert cache_is_empty(cache)


def test_wrong_abi_is_refused(server, tmp_path):
    server.files["/bin/android_aarch64_benchmark_model"] = BASH.read_bytes()
    cache = tmp_path / "cache"
    with pytest.raises(BenchmarkError, match=r"built for x86-64 \(64-bit\), but the device ABI is arm64-v8a"):
        ensure_binary("arm64-v8a", cache_dir=cache, base_url=f"{server.base}/ok/bin")
    assert cache_is_empty(cache)


def test_404_names_the_url_the_cache_and_the_from_command(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(BenchmarkError) as err:
        ensure_binary("arm64-v8a", cache_dir=cache, base_url=f"{server.base}/ok/nothing")
    message = str(err.value)
    assert f"{server.base}/ok/nothing/android_aarch64_benchmark_model" in message
    assert "HTTP 404" in message and str(cache / "arm64-v8a" / "benchmark_model") in message
    assert "mobile-opt tools install --abi arm64-v8a --from FILE" in message
    assert cache_is_empty(cache)


def test_stalled_server_times_out(server, tmp_path):
    server.files["/f"] = BASH.read_bytes()
    cache = tmp_path / "cache"
    with pytest.raises(BenchmarkError, match=r"no data for 0.5 s \(timed out\)"):
        install_binary("x86_64", source=f"{server.base}/stall/f", cache_dir=cache, timeout_s=0.5)
    assert cache_is_empty(cache)


def test_pinned_hash_refuses_any_other_binary(server, tmp_path, monkeypatch):
    server.files["/f"] = BASH.read_bytes()
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.mobile-opt.benchmark-model-sha256]\nx86_64 = "' + "0" * 64 + '"\n'
    )
    monkeypatch.chdir(project)
    cache = tmp_path / "cache"
    with pytest.raises(BenchmarkError, match="pins"):
        install_binary("x86_64", source=f"{server.base}/ok/f", cache_dir=cache)
    assert cache_is_empty(cache)
    # A binary already in the cache is refused too.
    (cache / "x86_64").mkdir(parents=True)
    (cache / "x86_64" / "benchmark_model").write_bytes(BASH.read_bytes())
    with pytest.raises(BenchmarkError, match="pins"):
        ensure_binary("x86_64", cache_dir=cache)


def test_a_pin_refuses_an_explicit_benchmark_binary_too(loopback, direct, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.mobile-opt.benchmark-model-sha256]\narm64-v8a = "' + "0" * 64 + '"\n')
    monkeypatch.chdir(project)
    with pytest.raises(BenchmarkError, match=r"bash has sha256 .* pins .* CI runs only the pinned binary"):
        prepare_binary(direct, "arm64-v8a", ToolSettings(binary=BASH))


def test_elf_of_the_right_machine_but_wrong_class_is_refused(tmp_path):
    # An AArch64 machine number in a 32-bit (ELFCLASS32) header: an ILP32 build, not arm64-v8a's.
    elf = tmp_path / "benchmark_model"
    elf.write_bytes(b"\x7fELF" + bytes([1, 1, 1]) + bytes(9) + (2).to_bytes(2, "little")
                    + (183).to_bytes(2, "little") + bytes(44))
    # A local file is the user's input: refusing it is an InputError (exit 2).
    with pytest.raises(InputError, match=r"built for AArch64 \(32-bit\), but the device ABI is "
                                         r"arm64-v8a \(AArch64, 64-bit\)"):
        install_binary("arm64-v8a", source=str(elf), cache_dir=tmp_path / "cache")


def test_unpublished_abi_without_a_mirror_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("MOBILE_OPT_TOOLS_URL", raising=False)
    with pytest.raises(BenchmarkError, match="TFLite publishes no prebuilt benchmark_model for x86"):
        install_binary("x86", cache_dir=tmp_path / "cache")
    assert source_url("arm64-v8a").endswith("/nightly/latest/android_aarch64_benchmark_model")


def test_bench_cli_on_a_fresh_cache_fetches_checks_and_says_so(
    server, fake_tool, loopback, tiny_model, tmp_path, monkeypatch, caplog
):
    server.files["/mirror/android_aarch64_benchmark_model"] = fake_tool
    monkeypatch.setenv("MOBILE_OPT_TOOLS_URL", f"{server.base}/ok/mirror")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh"))  # the default cache, empty
    serial = f"direct:{loopback.serial}"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # direct: keeps its adb key under HOME
    result = CliRunner().invoke(cli, ["bench", str(tiny_model), "--device", serial, "--runs", "3",
                                      "--min-secs", "0.1", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["results"]
    assert row["status"] == "ok"
    # What the CLI's log handler prints (pytest's capture handler stands in for it here).
    assert f"fetched benchmark_model for arm64-v8a from {server.base}/ok/mirror" in caplog.text
    (record,) = list_binaries(tmp_path / "fresh" / "mobile-opt" / "benchmark_model")
    assert record.kind == "script" and record.device_check == f"{serial}: --help ok"
    assert row["measurement"]["binary_sha256"] == record.sha256
    assert server.hits == ["/ok/mirror/android_aarch64_benchmark_model"]


def test_a_binary_that_does_not_run_is_refused_on_the_device(server, loopback, tmp_path):
    server.files["/f"] = b"#!/bin/sh\necho 'not the tool'\n"
    cache = tmp_path / "cache"
    with connect(f"direct:{loopback.serial}", key_path=tmp_path / "adbkey") as device:
        with pytest.raises(BenchmarkError, match="without listing --graph: not the tool"):
            install_binary("arm64-v8a", source=f"{server.base}/ok/f", device=device, cache_dir=cache)
    assert cache_is_empty(cache)
    assert not loopback.device_path("/data/local/tmp/mobile_opt/bin/benchmark_model").exists()


def test_cli_install_from_file_and_list(tmp_path):
    cache = tmp_path / "cache"
    runner = CliRunner()
    result = runner.invoke(cli, ["tools", "install", "--abi", "x86_64", "--from", str(BASH),
                                 "--cache-dir", str(cache)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sha = hashlib.sha256(BASH.read_bytes()).hexdigest()
    listing = runner.invoke(cli, ["tools", "list", "--cache-dir", str(cache), "--json"])
    assert listing.exit_code == 0, listing.output
    (row,) = json.loads(listing.output)["binaries"]
    assert row["sha256"] == sha and row["source"] == str(BASH) and row["abi"] == "x86_64"
    table = runner.invoke(cli, ["tools", "list", "--cache-dir", str(cache)])
    assert sha[:16] in table.output and "x86_64" in table.output


def test_cli_install_offline_is_exit_1_with_the_url(tmp_path, closed_port):
    result = CliRunner().invoke(cli, ["tools", "install", "--abi", "arm64-v8a", "--url",
                                      f"http://127.0.0.1:{closed_port}/m", "--cache-dir",
                                      str(tmp_path / "c")])
    assert result.exit_code == 1
    assert f"http://127.0.0.1:{closed_port}/m/android_aarch64_benchmark_model" in result.output
    assert "--from FILE" in result.output


def test_cli_install_for_a_device_detects_its_abi_and_runs_help(fake_tool, loopback, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # direct: keeps its adb key under HOME
    source = tmp_path / "benchmark_model"
    source.write_bytes(fake_tool)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["tools", "install", "--device", f"direct:{loopback.serial}", "--from",
                                      str(source), "--cache-dir", str(cache)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "installed benchmark_model for arm64-v8a" in result.output and "--help ok" in result.output
    assert (cache / "arm64-v8a" / "benchmark_model").read_bytes() == fake_tool
    wrong = CliRunner().invoke(cli, ["tools", "install", "--device", f"direct:{loopback.serial}", "--abi", "x86",
                                     "--from", str(source), "--cache-dir", str(cache)])
    assert wrong.exit_code == 2 and "does not match the device's ABI" in wrong.output


@pytest.mark.parametrize("content", [b"", b"hello, not a binary\n", BASH.read_bytes()[:4096]],
                         ids=["empty", "text", "truncated-elf"])
def test_cli_install_of_an_invalid_from_file_is_exit_2_and_leaves_nothing(tmp_path, content):
    # issue 22: it was exit 1, left <cache>/<abi>/ behind, and claimed "The binary is cached at ...".
    source = tmp_path / "not-the-tool"
    source.write_bytes(content)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["tools", "install", "--abi", "x86_64", "--from", str(source),
                                      "--cache-dir", str(cache)])
    assert result.exit_code == 2, result.output
    assert f"refused the binary from {source}" in result.output and ".partial" not in result.output
    assert "is cached at" not in result.output and "was not changed" in result.output
    assert cache_is_empty(cache)


def test_cli_install_into_an_unwritable_cache_is_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")
    result = CliRunner().invoke(cli, ["tools", "install", "--abi", "x86_64", "--from", str(BASH),
                                      "--cache-dir", str(blocker / "cache")])
    assert result.exit_code == 2, result.output
    assert "cannot write the benchmark binary cache" in result.output and "--cache-dir" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
