"""The README and docs/*.md are true: their Python examples run against the session's real server,
their shell examples run where they can (`yolo-triton detect`, the gateway, curl) and name only
real things where they cannot (make targets and variables, `python -m` modules and their flags,
`yolo-triton` arguments, compose services, Helm values, extras, environment variables, files);
their tables equal the code; every relative link and anchor resolves."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import COCO_IMAGES, YOLO_TRITON, pyproject, ultralytics_assets

from yolo_triton import contract
from yolo_triton.client import cli
from yolo_triton.client.async_detector import DEFAULT_URLS
from yolo_triton.contract import VARIANTS, Variant
from yolo_triton.models_file import FIELDS, ModelsFileError, parse_models
from yolo_triton.repository import ROOT
from yolo_triton.tritonserver import free_ports

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = {page: page.read_text() for page in PAGES}
DOCS = ROOT / "docs"


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _blocks(*languages: str) -> list[tuple[str, str]]:
    """(id, code) of the fenced blocks of these languages, page by page."""
    found = []
    for page, text in TEXT.items():
        for i, (language, code) in enumerate(re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)):
            if language in languages:
                found.append((f"{_name(page)}:{language}{i}", code))
    return found


def _params(blocks):
    return pytest.mark.parametrize("code", [c for _, c in blocks], ids=[i for i, _ in blocks])


def _without_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _inline_code() -> list[tuple[str, str]]:
    return [(_name(p), span) for p, t in TEXT.items() for span in re.findall(r"`([^`\n]+)`", _without_blocks(t))]


@functools.cache
def _code_corpus() -> str:
    """Everything but the docs: where the names the docs mention must be defined."""
    files = [
        p
        for pattern in ("yolo_triton/**/*.py", "tests/**/*.py", "benchmarks/*.py", "deploy/**/*", "docker/*", ".ci/*")
        for p in ROOT.glob(pattern)
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".png")
    ]
    files += [ROOT / n for n in ("Makefile", "docker-compose.yml", ".env", "pyproject.toml")]
    files = [f for f in files if f != Path(__file__)]
    return "\n".join(f.read_text(errors="ignore") for f in files)


@functools.cache
def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.M))


@functools.cache
def _module_help(module: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"python -m {module} --help: {run.stderr[-2000:]}"
    return run.stdout


@functools.cache
def _helm_values() -> dict:
    return yaml.safe_load((ROOT / "deploy/helm/yolo-triton/values.yaml").read_text())


def _has_value(path: str) -> bool:
    node = _helm_values()
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


@functools.cache
def _extras() -> dict[str, list[str]]:
    return pyproject()["optional-dependencies"]


# --- Python ----------------------------------------------------------------------------------------


@_params(_blocks("python"))
def test_python_examples_run(code, triton, monkeypatch, capsys):
    monkeypatch.chdir(ultralytics_assets())  # the examples open bus.jpg and zidane.jpg
    monkeypatch.setitem(DEFAULT_URLS, "http", triton.http_url)  # the client's defaults: this server
    monkeypatch.setitem(DEFAULT_URLS, "grpc", triton.grpc_url)
    exec(code.replace("127.0.0.1:8000", triton.http_url).replace("127.0.0.1:8001", triton.grpc_url), {})
    assert capsys.readouterr().out.strip(), "each example shows what it got"


# --- Shell: run what can run against the session's server ---------------------------------------------

# what a block may hold to be run: the client, curl to the server or gateway, shell variables, a { }
# group, and the README's first steps in the checkout (its .venv, the sample photos of the wheel)
RUNNABLE = re.compile(
    r"^(\.venv/bin/)?yolo-triton (detect|gateway) |^curl .*127\.0\.0\.1:80(00|80)|^\w+=(\$\(.*\)|'.*')$|^\{ "
    r"|^source \.venv/bin/activate\b|^cp \.venv/lib/python3\*/site-packages/ultralytics/assets/"
)


def _commands(code: str) -> list[str]:
    """The block's command lines: continuations joined, comment lines and blank lines dropped."""
    lines = code.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


SANDBOX = ("bus.jpg", "zidane.jpg", "photos/", "more/**/*.jpg")  # what the runnable examples may name


def _checkout_like(folder: Path) -> Path:
    """folder with .venv: this environment, as in the checkout (the examples source it, copy from it)."""
    (folder / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A folder with the files of SANDBOX: Ultralytics' two photos, three coco128 photos in photos/, one in more/a/."""
    folder = _checkout_like(tmp_path_factory.mktemp("examples"))
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(ultralytics_assets() / name, folder / name)
    coco = sorted(COCO_IMAGES.glob("*.jpg"))[:3]
    (folder / "photos").mkdir()
    (folder / "more" / "a").mkdir(parents=True)
    for image in coco:
        shutil.copy(image, folder / "photos" / image.name)
    shutil.copy(coco[0], folder / "more" / "a" / coco[0].name)
    return folder


def _runnable(code: str) -> bool:
    """Only the client, curl to the server and shell variables, and `yolo-triton detect` only of SANDBOX's files."""

    def sources_here(line: str) -> bool:
        try:
            args = cli.parser().parse_args(_words(line.replace(".venv/bin/", ""))[1:])
        except SystemExit:
            return False  # test_shell_examples_name_real_things says why
        return all(s in SANDBOX for s in args.sources)

    lines = _commands(code)
    return bool(lines) and all(
        RUNNABLE.match(line) and (" detect " not in line or sources_here(line)) for line in lines
    )


SHELL = _blocks("bash")


def _as_run_here(line: str, triton, gateway_port: int) -> list[str]:
    """A documented command line as run here: the session's server for 127.0.0.1:8000 / 8001 and for
    `yolo-triton detect` without --url; the gateway on a free port, in the background, waited for."""
    line = line.replace("127.0.0.1:8080", f"127.0.0.1:{gateway_port}")
    line = line.replace("127.0.0.1:8000", triton.http_url).replace("127.0.0.1:8001", triton.grpc_url)
    if " gateway " in f" {line} ":
        line = _words(line.replace("--port 8080", f"--port {gateway_port}"))
        line = shlex.join(line[: line.index("&")] if "&" in line else line)
        health = f"http://127.0.0.1:{gateway_port}/health"
        return [
            f"{line} 2>gateway.log & trap 'kill $!' EXIT",
            f"for _ in $(seq 100); do curl -sf {health} >/dev/null && break; sleep 0.2; done",
        ]
    if re.search(r"yolo-triton detect ", line) and "--url" not in line:
        url = triton.http_url if "--protocol http" in line else triton.grpc_url
        line = line.replace("yolo-triton detect ", f"yolo-triton detect --url {url} ", 1)
    return [line]


def _run_script(lines: list[str], folder: Path, client_on_path: bool = True) -> subprocess.CompletedProcess:
    """The lines in one bash, stopping at the first failure; every JSON answer without an error."""
    path = [f'export PATH="{YOLO_TRITON.parent}:$PATH"'] if client_on_path else []
    script = ["set -euo pipefail", *path, *lines]
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=folder, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    answers = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    for answer in answers:
        assert "error" not in answer and ("detections" in answer or "outputs" in answer), answer
    return run


@_params([(i, code) for i, code in SHELL if _runnable(code)])
def test_shell_examples_run(code, triton, sandbox):
    if "curl" in code and not shutil.which("curl"):
        pytest.skip("no curl here")
    (gateway_port,) = free_ports(1)
    run = _run_script([line for c in _commands(code) for line in _as_run_here(c, triton, gateway_port)], sandbox)
    assert any(line.startswith("{") for line in run.stdout.splitlines()) or (sandbox / "detections.csv").is_file()


# The README's commands that the test below does not run, and where they are covered instead
README_NOT_RUN = {
    r"make serve": "the session's server stands for it; tests/L0_make_serve runs what make serve runs",
    r"YOLO_WEIGHTS=\S+ make serve": "another server: tests/L0_make_serve serves YOLO_WEIGHTS",
    r"YOLO_MODELS_FILE=\S+ make serve": "weights of one's own: the session's server is served from a models file",
    r"\.venv/bin/yolo-triton detect --model ppe photo\.jpg": "the models file's own model and photo",
    r"(YOLO_WEIGHTS_DIR=\S+ )?docker compose .*": "Docker and a GPU: tests/unit/test_deployment.py",
    r"curl -f http://127\.0\.0\.1:8000/v2/health/ready": "docker compose's server",
    r"helm install .*": "a Kubernetes cluster: tests/unit/test_helm_chart.py",
    r"make test-data|make test": "online, and the tests themselves",
}


def test_readme_runs_in_order(triton, tmp_path):
    """The README's commands as a user types them, in order, in one shell, in a folder like a fresh
    checkout after the quick start (its .venv; the session's server for `make serve`): the printed
    first request, the sample photos copied from the wheel, `yolo-triton detect`, the Python example
    and the gateway with curl. Each command not run here is named in README_NOT_RUN."""
    if not shutil.which("curl"):
        pytest.skip("no curl here")
    (gateway_port,) = free_ports(1)
    preamble = (
        "from yolo_triton.client.async_detector import DEFAULT_URLS\n"  # the client's defaults: this server
        f"DEFAULT_URLS.update(http={triton.http_url!r}, grpc={triton.grpc_url!r})\n"
    )
    script = []
    for language, code in re.findall(r"^```(\w*)\n(.*?)^```", TEXT[ROOT / "README.md"], re.M | re.S):
        if language == "python":
            script.append(f"{shlex.quote(sys.executable)} - <<'PYTHON'\n{preamble}{code}PYTHON")
        elif language in ("bash", ""):  # an unlabelled block is output (make serve's): only its command runs
            for line in _commands(code):
                if any(re.fullmatch(p, line.split("#")[0].strip()) for p in README_NOT_RUN):
                    continue
                assert RUNNABLE.match(line) or language == "", f"README: {line!r} neither runs here nor is named"
                if RUNNABLE.match(line):
                    script += _as_run_here(line, triton, gateway_port)
    run = _run_script(script, _checkout_like(tmp_path), client_on_path=False)  # the README's `source` puts it there
    answers = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 3, run.stdout[-3000:]  # the printed first request, detect, and curl
    assert answers[0]["image"].endswith("/ultralytics/assets/bus.jpg") and answers[1]["image"] == "bus.jpg"
    printed = run.stdout.splitlines()  # the Python example: bus.jpg by its path, zidane.jpg as bytes
    assert any(line.startswith("bus.jpg [") for line in printed) and any(
        line.startswith("<bytes 1> [") for line in printed
    )
    assert answers[2]["model"] == "yolov11_nano" and answers[2]["image"] == "bus.jpg"  # the gateway's answer


def test_readme_detect_output_is_what_the_server_answers(triton, sandbox):
    """The README's example line: yolov8_nano (the official yolov8n.pt) on bus.jpg."""
    example = re.search(r"`(\{\"image\": \"bus\.jpg\".*?)`", TEXT[ROOT / "README.md"]).group(1)
    quoted = [json.loads(d) for d in re.findall(r"\{\"class_id\"[^}]*\}", example)]
    run = subprocess.run(
        [YOLO_TRITON, "detect", "--url", triton.grpc_url, "--model", "yolov8_nano", "bus.jpg"],
        cwd=sandbox,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    served = json.loads(run.stdout)["detections"]
    for d in quoted:
        assert any(
            s["class_id"] == d["class_id"]
            and s["class_name"] == d["class_name"]
            and abs(s["score"] - d["score"]) < 0.02
            and max(abs(a - b) for a, b in zip(s["box"], d["box"])) < 2
            for s in served
        ), (d, served)


def test_the_printed_first_request_is_what_serve_prints():
    from yolo_triton.serve import FIRST_REQUEST

    models = contract.DEFAULT_VARIANTS
    printed = FIRST_REQUEST.format(models=", ".join(models), first=models[0], http=8000, grpc=8001, metrics=8002)
    for page in (ROOT / "README.md", DOCS / "serving.md"):
        assert printed.strip() in TEXT[page], f"{_name(page)} does not show what make serve prints"


# --- Shell: what cannot run names only real things -----------------------------------------------------


def _check_command(words: list[str], problems: list[str]) -> None:
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):  # VAR=value before the command
        _check_variable(words.pop(0).split("=")[0], problems)
    if not words:
        return
    program, args = words[0].removeprefix(".venv/bin/"), words[1:]
    if program == "make":
        for arg in args:
            if "=" in arg:
                if not re.search(rf"\b{re.escape(arg.split('=')[0])}\b", (ROOT / "Makefile").read_text()):
                    problems.append(f"make variable {arg.split('=')[0]} is not in the Makefile")
            elif not arg.startswith("-") and arg not in _make_targets():
                problems.append(f"make target {arg} is not in the Makefile")
    elif program in ("python", "python3"):
        if args[:1] == ["-m"] and args[1:2] == ["pytest"]:
            problems += [f"{a}: no such test file" for a in args[2:] if a.endswith(".py") and not (ROOT / a).is_file()]
        elif args[:1] == ["-m"]:
            text = _module_help(args[1])
            flags = {a.split("=")[0] for a in args[2:] if a.startswith("--")}
            problems += [f"python -m {args[1]} has no flag {f}" for f in sorted(flags) if f not in text]
        elif args and args[0].endswith(".py") and not (ROOT / args[0]).is_file():
            problems.append(f"{args[0]}: no such file")
    elif program == "yolo-triton":
        try:
            cli.parser().parse_args(args)
        except SystemExit:
            problems.append(f"yolo-triton refuses {shlex.join(args)}")
    elif program == "docker" and args[:1] == ["compose"]:
        services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
        if args[1:2] == ["run"]:
            service = [a for a in args[2:] if not a.startswith("-")][0]
            if service not in services:
                problems.append(f"docker compose has no service {service}")
    elif program == "helm" and args[:1] == ["install"]:
        positional = [
            a for i, a in enumerate(args[1:], 1) if not a.startswith("-") and args[i - 1] not in ("-f", "--set")
        ]
        problems += [f"{p}: no such chart" for p in positional[1:] if not (ROOT / p).is_dir()]
        for flag, value in zip(args, args[1:]):
            if flag == "-f" and not (ROOT / value).is_file():
                problems.append(f"{value}: no such values file")
            if flag == "--set" and not _has_value(value.split("=")[0]):
                problems.append(f"the chart has no value {value.split('=')[0]}")
    elif program == "pip" and args[:1] == ["install"]:
        for arg in args[1:]:
            for extra in re.findall(r"\[([\w,-]+)\]", arg):
                problems += [f"no extra [{e}] in pyproject.toml" for e in extra.split(",") if e not in _extras()]
    elif program == "bash" and args and "/" in args[0] and not (ROOT / args[0]).is_file():
        problems.append(f"{args[0]}: no such file")


def _check_variable(name: str, problems: list[str]) -> None:
    if not re.search(rf"\b{re.escape(name)}\b", _code_corpus()):
        problems.append(f"{name} is read nowhere in the code")


@_params(SHELL)
def test_shell_examples_name_real_things(code):
    problems = []
    for line in _commands(code):
        words, command = _words(line), []
        for word in [*words, "&&"]:
            if word in ("&&", "||", ";", "|", "&"):
                _check_command(command, problems)
                command = []
            else:
                command.append(word)
    assert not problems, problems


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its package is missing
        return False


def _yolo_triton_unknown(command: str, rest: str) -> list[str]:
    """The command, or those of the flags in rest, that `yolo-triton` does not have."""
    commands = next(a for a in cli.parser()._actions if a.dest == "command").choices
    if command not in commands:
        return [command]
    flags = {f for action in commands[command]._actions for f in action.option_strings}
    return [w for w in rest.split() if w.startswith("-") and w not in flags]


def test_inline_code_names_real_things():
    """`make X`, `python -m X`, `yolo_triton.x`, repository paths and UPPER_CASE names in the text."""
    problems = []
    for page, span in _inline_code():
        where = f"{page}: `{span}`"
        if m := re.fullmatch(r"(?:[A-Z_]+=\S+ )*make ([\w-]+)(?: .*)?", span):
            if m.group(1) not in _make_targets():
                problems.append(f"{where}: no such make target")
        if m := re.search(r"python -m ([\w.]*\w)(?![.<\w])", span):
            if not _module_exists(m.group(1)):
                problems.append(f"{where}: no such module")
            elif m.group(1) != "pytest":
                flags = re.findall(r"\s(--[\w-]+)", span[m.end() :])
                problems += [f"{where}: no flag {f}" for f in flags if f not in _module_help(m.group(1))]
        if m := re.match(r"(?:\.venv/bin/)?yolo-triton (\w+)(.*)", span):  # its command and flags
            problems += [f"{where}: yolo-triton refuses {w}" for w in _yolo_triton_unknown(m.group(1), m.group(2))]
        for extras in re.findall(r"^\[([\w,-]+)\]$|yolo-triton\[([\w,-]+)\]|^\.\[([\w,-]+)\]", span):
            unknown = [e for e in ",".join(extras).split(",") if e and e not in _extras()]
            problems += [f"{where}: no extra [{e}] in pyproject.toml" for e in unknown]
        if re.fullmatch(r"(yolo_triton|benchmarks)(\.\w+)+", span) and not _module_exists(span):
            problems.append(f"{where}: no such module")
        if re.fullmatch(r"(yolo_triton|tests|benchmarks|deploy|docker|model_repository|docs)/[\w./-]*", span):
            if not (ROOT / span).exists():
                problems.append(f"{where}: no such file")
        if re.fullmatch(r"(\.env|docker-compose\.yml|requirements[\w-]*\.txt|Makefile|pyproject\.toml)", span):
            if not (ROOT / span).is_file():
                problems.append(f"{where}: no such file")
        for name in re.findall(r"(?:^|\s)([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?=[=\s]|$)", span):
            if not re.search(rf"\b{name}\b", _code_corpus()):
                problems.append(f"{where}: {name} is named nowhere in the code")
    assert not problems, "\n".join(problems)


# --- YAML ------------------------------------------------------------------------------------------


@_params(_blocks("yaml"))
def test_yaml_examples(code):
    """Models files parse as models files; Helm values name the chart's values; the rest is YAML."""
    data = yaml.safe_load(code)
    assert data
    if all(isinstance(v, dict) and "weights" in v for v in data.values()):
        parse_models(data, "models.yaml")
    elif set(data) <= set(_helm_values()):  # values for the chart
        problems = []

        def check(node: dict, defaults: dict, prefix: str) -> None:
            for key, value in node.items():
                if key not in defaults:
                    problems.append(f"the chart has no value {prefix}{key}")
                elif isinstance(value, dict) and isinstance(defaults[key], dict):
                    check(value, defaults[key], f"{prefix}{key}.")
                elif key == "modelsFile":
                    parse_models(yaml.safe_load(value), "modelsFile")

        check(data, _helm_values(), "")
        assert not problems, problems


# --- Tables and numbers that the code defines -------------------------------------------------------


def test_builtin_table_is_the_contract():
    text = TEXT[DOCS / "models.md"]
    rows = re.findall(
        r"^\| `(\w+)` \| (\S+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| ([\d, ]+) \|$", text, re.M
    )
    table = {r[0]: r[1:] for r in rows}
    assert set(table) == set(VARIANTS)
    for name, v in VARIANTS.items():
        assert table[name] == (
            v.weights,
            str(v.imgsz),
            str(v.max_detections),
            str(v.conf),
            str(v.iou),
            str(v.max_batch_size),
            ", ".join(map(str, v.preferred_batch_sizes)),
        )


def test_models_file_keys_table_is_the_code():
    rows = re.findall(r"^  \| ((?:`\w+`(?:, )?)+) \| ([^|]+) \|", TEXT[DOCS / "models.md"], re.M)
    defaults = {}
    for keys, default in rows:
        names = re.findall(r"`(\w+)`", keys)
        values = [d.strip() for d in default.split(",")] if len(names) > 1 and "," in default else [default.strip()]
        for key, value in zip(names, values * len(names) if len(values) == 1 else values):
            defaults[key] = value
    assert set(defaults) == set(FIELDS) - {"weights"}
    for key, value in defaults.items():
        if key == "preferred_batch_sizes":
            assert value.startswith(", ".join(map(str, Variant.preferred_batch_sizes))), value
        elif hasattr(Variant, key) and key != "nms_free":
            assert value == str(getattr(Variant, key)).lower(), (key, value)
    error = re.search(r"`(models\.yaml: model 'ppe': key 'conf': [^`]*)`", TEXT[DOCS / "models.md"]).group(1)
    with pytest.raises(ModelsFileError) as raised:
        parse_models({"ppe": {"weights": "/weights/best.pt", "conf": 1.5}}, "models.yaml")
    assert str(raised.value) == error


def test_extras_table_is_pyproject():
    """The table names each extra's distributions in order (the GPU runtimes' pins and markers are
    requirements-gpu-cu1x.txt's, tests/unit/test_gpu_extra.py)."""
    rows = re.findall(r"^\| `([\w-]+)` \| [^|]+ \| ([^|]+) \|$", TEXT[DOCS / "install.md"], re.M)

    def names(requirements: list[str]) -> list[str]:
        return list(dict.fromkeys(re.split(r"[=<>!~; ]", r, maxsplit=1)[0] for r in requirements))

    assert {extra: [p.strip() for p in packages.split(",")] for extra, packages in rows} == {
        extra: names(requirements) for extra, requirements in _extras().items()
    }


def test_limits_are_the_code():
    from yolo_triton import preprocessing
    from yolo_triton.client import async_detector
    from yolo_triton.model_config import QUEUE_BATCHES
    from yolo_triton.targets import GPU_MIN_QUEUE

    text = TEXT[DOCS / "limits.md"]
    assert f"over the limit of {contract.MAX_IMAGE_BYTES}`" in text and contract.MAX_IMAGE_BYTES == 64 * 2**20
    assert f"over the limit of {preprocessing.MAX_IMAGE_PIXELS}: refused`" in text
    assert f"at most {QUEUE_BATCHES} max-size batches" in text and f"at least {GPU_MIN_QUEUE:,} requests" in text
    # the messages of the preprocessing, and Triton's full-queue message, which the client retries on
    source = Path(preprocessing.__file__).read_text() + Path(async_detector.__file__).read_text()
    rows = [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| ") and "refused" in line]
    for message in [m for row in rows for m in re.findall(r"(?:refused[^`]*?|/ )`([^`]+)`", row)]:
        for fragment in re.split(r"\bN\b|\d+x\d+|\d{6,}|(?<=decode )(?:GIF )?image|\.\.\.", message):
            assert fragment.strip(" ()") in source, (message, fragment)


def test_pins_are_the_requirements():
    pinned = {}
    for name in ("requirements.txt", "requirements-gpu-cu12.txt", "requirements-gpu-cu13.txt"):
        for line in (ROOT / name).read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                package, version = line.split(";")[0].strip().split("==")
                pinned.setdefault(package.split("[")[0], set()).add(version)
    text = TEXT[DOCS / "pins.md"]
    named = re.findall(r"`([\w.-]+)==([\w.]+)`", text)
    assert len(named) >= 15
    for package, version in named:
        assert version in pinned.get(package, ()), f"{package}=={version}: requirements pin {pinned.get(package)}"
    release = re.search(r"^NGC_RELEASE=(.+)$", (ROOT / ".env").read_text(), re.M).group(1)
    assert f"**NGC {release}**" in text


# --- Links ---------------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen, anchors = {}, set()
    for heading in re.findall(r"^#{1,6} (.+)$", _without_blocks(page.read_text()), re.M):
        slug = _slug(heading)
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_relative_link_resolves():
    problems = []
    for page, text in TEXT.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", _without_blocks(text)):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                problems.append(f"{_name(page)}: {target}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                problems.append(f"{_name(page)}: {target}: no such heading in {resolved.name}")
            elif not str(resolved).startswith(str(ROOT)):
                problems.append(f"{_name(page)}: {target}: outside the repository")
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme():
    readme = TEXT[ROOT / "README.md"]
    assert [p for p in PAGES[1:] if f"(docs/{p.name})" not in readme] == []


def test_no_page_pins_a_release_itself():
    """The release is named in prose, never as a container tag: .env pins it (test_deployment.py)."""
    for page, text in TEXT.items():
        assert not re.search(r"(tritonserver|tensorrt):\d\d\.\d\d", text), _name(page)
