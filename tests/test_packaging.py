"""The distribution: the wheel built from this checkout, installed outside it — with the
core dependencies alone (`ivr check` and `ivr simulate` work, a command that needs an
extra says which), and with all extras (the packaged portal dialplan runs).

Nothing is downloaded: the wheel is built without build isolation, and each test venv
sees the packages of the project's own venv through a ``.pth`` file (the core one only
the core requirements and what they need).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NAME = PYPROJECT["project"]["name"]
CORE = ("transitions", "PyYAML", "pydantic", "click")
#: what the wheel is built from (the ivr/_data symlinks point into dialplans/ and prompts/)
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "dialplan.schema.json")
SOURCE_DIRS = ("ivr", "dialplans", "prompts")
PIP = (sys.executable, "-m", "pip")

pytestmark = pytest.mark.timeout(240)


def test_core_requirements_are_the_four_the_commands_need() -> None:
    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    assert len(requirements) <= 5
    assert sorted(r.name for r in requirements) == sorted(CORE)


def test_every_extra_is_in_all_and_dev_builds_on_all() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras) == {"audio", "sip", "portal", "all", "dev"}
    assert extras["all"] == [f"{NAME}[audio,sip,portal]"]
    assert f"{NAME}[all]" in extras["dev"]


def test_in_a_checkout_the_packaged_files_are_the_repository_ones() -> None:
    from ivr.resources import catalog_dir, portal_dialplan, schema_path

    assert portal_dialplan().resolve() == ROOT / "dialplans" / "anywhere_portal.yaml"
    assert catalog_dir("de").resolve() == ROOT / "prompts" / "de"
    assert schema_path().resolve() == ROOT / "dialplan.schema.json"


def test_portal_commands_default_to_the_packaged_dialplan_and_password_to_the_env() -> None:
    from click.testing import CliRunner

    from ivr.cli import main

    runner = CliRunner()
    config = str(ROOT / "examples" / "portal" / "portal.yaml")
    checked = runner.invoke(main, ["check", "--portal", config])
    assert checked.exit_code == 0, checked.output
    assert "_data/dialplans/anywhere_portal.yaml: ok" in checked.output
    alone = runner.invoke(main, ["simulate", "--caller", "0171"])
    assert alone.exit_code == 2
    assert "give a DIALPLAN (or --portal CONFIG" in alone.output
    serve_help = runner.invoke(main, ["serve", "--help"])
    assert "env var:" in serve_help.output
    assert "IVR_SIP_PASSWORD" in serve_help.output


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a copy of the checkout (no build/ or egg-info in it)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", ".cache", "*.pyc")
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    _run(
        [
            *PIP,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        cwd=source,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_the_portal_dialplan_its_prompts_and_the_schema(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "ivr/py.typed",
        "ivr/_data/dialplan.schema.json",
        "ivr/_data/dialplans/anywhere_portal.yaml",
        "ivr/_data/dialplans/demo.yaml",
        "ivr/_data/prompts/de/portal.yaml",
        "ivr/_data/prompts/de/common.yaml",
    ):
        assert name in names
    assert not [n for n in names if "/.cache/" in n or n.endswith((".wav", ".pyc"))]
    info = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    text = info.decode()
    assert f"Name: {NAME}" in text
    assert "License-Expression: MIT" in text
    assert "Classifier: Typing :: Typed" in text
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
    assert len([r for r in requires if "extra ==" not in r]) == len(CORE)


class Venv:
    """A venv outside the checkout with the wheel installed and ``site`` on its path."""

    def __init__(self, root: Path, wheel: Path, site: list[Path]) -> None:
        self.root = root
        _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
        self.python = root / "bin" / "python"
        purelib = _output(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        )
        Path(purelib, "ivr-test-deps.pth").write_text("".join(f"{p}\n" for p in site))
        _run(
            [
                *PIP,
                "--python",
                str(self.python),
                "install",
                "--no-deps",
                "--no-index",
                "-q",
                str(wheel),
            ]
        )
        self.work = root.parent / "work"  # where commands run: no checkout around
        self.work.mkdir()

    def ivr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "bin" / "ivr"), *args],
            cwd=self.work,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def python_out(self, code: str) -> str:
        return _output([str(self.python), "-c", code], cwd=self.work)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Venv]:
    links = tmp_path_factory.mktemp("core-site")
    for dist in _core_distributions():
        for top in _top_level_entries(dist):
            target = Path(str(dist.locate_file(top)))
            if target.exists() and not (links / top).exists():
                (links / top).symlink_to(target)
    yield Venv(tmp_path_factory.mktemp("core") / "venv", wheel, [links])


@pytest.fixture(scope="module")
def all_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Venv]:
    site = sorted({Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")})
    yield Venv(tmp_path_factory.mktemp("all") / "venv", wheel, site)


def test_core_install_checks_and_simulates_the_demo(core_venv: Venv) -> None:
    installed = core_venv.python_out("import ivr; print(ivr.__file__)")
    assert installed.startswith(str(core_venv.root)), installed
    for module in ("numpy", "pyVoIP", "phonenumbers", "argon2", "pydub"):
        code = f"import importlib.util as u; print(u.find_spec({module!r}) is None)"
        assert core_venv.python_out(code) == "True", f"{module} is visible to the core venv"
    demo = core_venv.python_out(
        "from ivr.resources import dialplan_path; print(dialplan_path('demo'))"
    )
    assert demo.startswith(str(core_venv.root))

    checked = core_venv.ivr("check", demo)
    assert checked.returncode == 0, checked.stderr
    assert "demo.yaml: ok" in checked.stdout

    call = core_venv.ivr(
        "simulate", demo, "--caller", "+49 171 1234567", "--keys", "2 12345# 1234 0"
    )
    assert call.returncode == 0, call.stderr
    assert "demo_welcome" in call.stdout

    schema = core_venv.ivr("schema")
    assert schema.returncode == 0, schema.stderr
    packaged = core_venv.python_out("from ivr.resources import schema_path; print(schema_path())")
    assert schema.stdout == Path(packaged).read_text(encoding="utf-8")
    assert '"$id": "urn:' in schema.stdout


@pytest.mark.parametrize(
    ("args", "extra", "command"),
    [
        (("serve", "--registrar", "127.0.0.1:5060", "DEMO"), "sip", "ivr serve"),
        (("prompts", "list"), "audio", "ivr prompts list"),
    ],
)
def test_core_install_names_the_missing_extra(
    core_venv: Venv, args: tuple[str, ...], extra: str, command: str
) -> None:
    demo = core_venv.python_out(
        "from ivr.resources import dialplan_path; print(dialplan_path('demo'))"
    )
    if command == "ivr prompts list":
        shutil.copytree(ROOT / "prompts", core_venv.work / "prompts", dirs_exist_ok=True)
    result = core_venv.ivr(*(demo if a == "DEMO" else a for a in args))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: `{command}` needs the {extra} extra: pip install '{NAME}[{extra}]'"
    ]


def test_all_extras_install_runs_the_packaged_portal(all_venv: Venv) -> None:
    installed = all_venv.python_out("import ivr; print(ivr.__file__)")
    assert installed.startswith(str(all_venv.root)), installed
    portal = all_venv.work / "portal"
    shutil.copytree(ROOT / "examples" / "portal", portal)
    config = str(portal / "portal.yaml")

    checked = all_venv.ivr("check", "--portal", config)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"/_data/dialplans/anywhere_portal\.yaml: ok", checked.stdout)

    call = all_venv.ivr(
        "simulate", "--portal", config, "--caller", "+49 171 1234567", "--keys", "4711# *11"
    )
    assert call.returncode == 0, call.stderr
    assert "portal_" in call.stdout  # the portal's own prompts were found and played
    assert not list(all_venv.root.rglob("*.sqlite"))  # the simulator keeps lockouts in memory


# --- helpers -------------------------------------------------------------------------
def _core_distributions() -> list[metadata.Distribution]:
    """The distributions the core requirements need, transitively (markers evaluated)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        key = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if key in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        dist = metadata.distribution(requirement.name)
        seen[key] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return list(seen.values())


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    """What ``dist`` put at the top of site-packages: packages, modules, its dist-info."""
    tops = set()
    for file in dist.files or []:
        parts = Path(file).parts
        if parts and parts[0] not in ("..", "__pycache__") and not parts[0].endswith(".pth"):
            tops.add(parts[0])
    return tops


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("IVR_LOCKOUT_STORE", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(command: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


def _output(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


def test_core_install_says_the_portal_dialplans_hooks_need_the_portal_extra(
    core_venv: Venv,
) -> None:
    portal = core_venv.python_out(
        "from ivr.resources import portal_dialplan; print(portal_dialplan())"
    )
    result = core_venv.ivr("check", portal)
    assert result.returncode == 2
    assert (
        f"hooks 'ivr.portal.hooks:hooks' needs the portal extra: pip install '{NAME}[portal]'"
        in (result.stdout + result.stderr)
    )
