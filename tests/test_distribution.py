"""The distributions' metadata as PyPI and pip read it: the MIT license in today's form (PEP 639,
the LICENSE file in the wheel and the sdist), project URLs and classifiers, and a README whose
images resolve on PyPI (absolute URLs under the Repository URL, each naming a committed file)."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A wheel and an sdist built from a fresh clone of HEAD (commit before trusting this)."""
    tmp = tmp_path_factory.mktemp("dist")
    src, dist = tmp / "src", tmp / "dist"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True, timeout=120)
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(dist), str(src)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    return wheel, sdist


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(z.read(name))


def test_every_python_package_folder_is_in_the_hand_kept_package_list():
    """pyproject lists the packages by hand (the folders install under other names): a folder with
    an __init__.py left out of the list is missing from the wheel, and every command fails at import."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = {f"portbell.{top}": ROOT / top for top in ("daemon", "tray")}
    found = {
        ".".join([name, *init.parent.relative_to(folder).parts])
        for name, folder in folders.items()
        for init in folder.rglob("__init__.py")
    }
    assert set(folders) <= set(setuptools["package-dir"])
    assert found - set(setuptools["packages"]) == set()


def test_the_license_is_a_pep_639_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # PEP 639: the expression alone
    # setuptools reads license expressions and license-files from 77.0 on
    (requirement,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", requirement).group(1).split("."))
    assert minimum >= (77,)


def test_the_wheel_and_the_sdist_carry_the_license_and_say_so_in_their_metadata(built):
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as z:
        licenses = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licenses) == 1 and z.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
    with tarfile.open(sdist) as t:
        (top,) = {n.split("/")[0] for n in t.getnames()}
        assert t.extractfile(f"{top}/LICENSE").read() == (ROOT / "LICENSE").read_bytes()
        pkg_info = email.message_from_bytes(t.extractfile(f"{top}/PKG-INFO").read())
    for meta in (wheel_metadata(wheel), pkg_info):
        assert float(meta["Metadata-Version"]) >= 2.4  # the version that has License-Expression
        assert meta["License-Expression"] == "MIT" and meta.get_all("License-File") == ["LICENSE"]
        assert meta["License"] is None  # the deprecated field is not written beside the expression
        urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
        assert urls["Repository"] == PYPROJECT["project"]["urls"]["Repository"] and urls["Issues"].startswith(urls["Repository"])
        classifiers = meta.get_all("Classifier")
        assert "Programming Language :: Python :: 3.11" in classifiers and "Topic :: System :: Monitoring" in classifiers


def test_the_readme_images_resolve_on_pypi_and_name_committed_files(built):
    wheel, _ = built
    description = wheel_metadata(wheel).get_payload()
    images = IMAGE.findall(description)
    assert images, "the README shows the tray's screenshots"
    raw = PYPROJECT["project"]["urls"]["Repository"].replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    for url in images:
        assert url.startswith(raw), f"{url}: PyPI serves no file of the sdist, so an image needs an absolute URL under {raw}"
        relative = url[len(raw) :]
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--error-unmatch", relative], capture_output=True)
        assert tracked.returncode == 0, f"{relative} is not committed, so {url} would not resolve"
