"""The same emoji in other art styles: openly licensed SVG sets from the npm registry.

Every style is aligned to the rows of the Noto dataset (``emoji_data.build``'s ``meta.json``), so one
emoji's name, captions and held-out split are shared by all its drawings:

| style | package | file of an emoji | licence |
|---|---|---|---|
| ``noto`` | Debian ``fonts-noto-color-emoji`` | the font's glyph | SIL OFL 1.1 (artwork also Apache-2.0) |
| ``twemoji`` | ``@twemoji/svg`` 15.0.0 | code points in hex, ``-``-joined | package MIT; artwork CC-BY 4.0 (Twitter, Inc. and contributors) |
| ``fluent-flat`` / ``fluent-modern`` / ``fluent-high-contrast`` | ``fluentui-emoji`` 1.3.0 | the CLDR name, hyphenated (``-default`` for emoji with skin tones) | MIT (Microsoft Fluent Emoji) |
| ``emojione`` | ``@iconify-json/emojione`` 1.2.3 (Emoji One 2.3) | Iconify icon set: the CLDR name, hyphenated | CC-BY 4.0 (Emoji One) |
| ``noto-v1`` | ``@iconify-json/noto-v1`` 1.2.5 (Noto's first, "blob" design) | as above | Apache-2.0 (Google) |
| ``fxemoji`` | ``@iconify-json/fxemoji`` 1.2.2 (Firefox OS emoji) | the Unicode name, words run together | Apache-2.0 (Mozilla) |
| ``streamline`` | ``@iconify-json/streamline-emojis`` 1.2.4 | its own names; those equal to a CLDR name | CC-BY 4.0 (Streamline) |

An Iconify package has no licence file: its ``info.json`` states the licence of the artwork (title, SPDX id,
URL) and ``package.json`` the package's; both are stored as the licence text.

OpenMoji (CC BY-SA 4.0) is not used: weights trained on it may count as an adaptation that share-alike
would put under CC BY-SA too, which the project's Apache-2.0 weights are not.

Packages are fetched once with ``npm pack`` into ``data/npm/`` (the tarball is kept, so a rebuild reads
the same bytes) and rasterised with resvg (``resvg-py``). An SVG that resvg cannot draw is skipped with one
line on stderr; a style simply lacks that emoji. ``HELD_OUT_STYLE`` is never shown to the evaluation model.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SvgStyle:
    name: str
    package: str  # npm name@version
    folder: str  # inside the package tarball
    naming: str  # "codepoints", "cldr-name" or "iconify" (an Iconify JSON icon set)
    licence_file: str
    licence: str  # what the card says


STYLES = (
    SvgStyle("twemoji", "@twemoji/svg@15.0.0", "package", "codepoints", "package/license",
             "Package: MIT (c) 2023 Samuel Kopp. Artwork: Twemoji, (c) Twitter, Inc. and other contributors, "
             "CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)."),
    SvgStyle("fluent-flat", "fluentui-emoji@1.3.0", "package/icons/flat", "cldr-name", "package/LICENSE",
             "Package: MIT (c) 2022 Mohammad Abu Mattar. Artwork: Microsoft Fluent Emoji, MIT (c) Microsoft."),
    SvgStyle("fluent-modern", "fluentui-emoji@1.3.0", "package/icons/modern", "cldr-name", "package/LICENSE",
             "Package: MIT (c) 2022 Mohammad Abu Mattar. Artwork: Microsoft Fluent Emoji, MIT (c) Microsoft."),
    SvgStyle("fluent-high-contrast", "fluentui-emoji@1.3.0", "package/icons/high-contrast", "cldr-name",
             "package/LICENSE",
             "Package: MIT (c) 2022 Mohammad Abu Mattar. Artwork: Microsoft Fluent Emoji, MIT (c) Microsoft."),
    SvgStyle("emojione", "@iconify-json/emojione@1.2.3", "package", "iconify", "package/info.json",
             "Artwork: Emoji One 2.3 (https://github.com/EmojiTwo/emojitwo), by Emoji One, CC-BY 4.0 "
             "(https://creativecommons.org/licenses/by/4.0/). Package: Iconify's JSON of that set, CC-BY-4.0."),
    SvgStyle("noto-v1", "@iconify-json/noto-v1@1.2.5", "package", "iconify", "package/info.json",
             "Artwork: Noto Emoji, first design, (c) Google Inc., Apache-2.0. Package: Iconify's JSON, Apache-2.0."),
    SvgStyle("fxemoji", "@iconify-json/fxemoji@1.2.2", "package", "iconify", "package/info.json",
             "Artwork: Firefox OS Emoji 0.0.2, (c) Mozilla, Apache-2.0. Package: Iconify's JSON, Apache-2.0."),
    SvgStyle("streamline", "@iconify-json/streamline-emojis@1.2.4", "package", "iconify", "package/info.json",
             "Artwork: Streamline Emojis by Streamline (https://www.streamlinehq.com), CC-BY 4.0 "
             "(https://creativecommons.org/licenses/by/4.0/). Package: Iconify's JSON, CC-BY-4.0."),
)
ALL_STYLES = ("noto",) + tuple(s.name for s in STYLES)
# A whole art style the evaluation model never sees: Twemoji is another artist's flat style, the nearest
# thing here to CLIP meeting a new dataset.
HELD_OUT_STYLE = "twemoji"


def available_styles(data_dir: Path) -> tuple[str, ...]:
    """The styles a dataset folder holds, in ``ALL_STYLES`` order (``noto`` always; a folder built before a
    style was added, or a small sample, may lack some)."""
    return tuple(s for s in ALL_STYLES if s == "noto" or (Path(data_dir) / "styles" / f"{s}.npy").exists())


def fetch_package(spec: str, cache: Path) -> Path:
    """``npm pack`` the package into `cache` once; returns the tarball's path."""
    cache.mkdir(parents=True, exist_ok=True)
    name, version = spec.rsplit("@", 1)
    tgz = cache / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tgz.exists():
        try:
            subprocess.run(["npm", "pack", spec, "--pack-destination", str(cache), "--silent"],
                           check=True, capture_output=True, text=True, timeout=600)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"npm is needed to fetch {spec} (apt-get install npm)") from e
        except subprocess.CalledProcessError as e:
            raise FileNotFoundError(f"npm could not fetch {spec}: {e.stderr.strip()[-300:]}") from e
        if not tgz.exists():
            raise FileNotFoundError(f"npm pack {spec} did not write {tgz.name}")
    return tgz


def iconify_svgs(icon_set: dict) -> dict[str, bytes]:
    """An Iconify JSON icon set -> icon name -> a standalone SVG (aliases resolved to their parent's drawing;
    an alias's own flips and rotations are not applied)."""
    left, top = icon_set.get("left", 0), icon_set.get("top", 0)
    width, height = icon_set.get("width", 16), icon_set.get("height", 16)

    def svg(icon: dict) -> bytes:
        box = (icon.get("left", left), icon.get("top", top), icon.get("width", width), icon.get("height", height))
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{" ".join(map(str, box))}">'
                f'{icon["body"]}</svg>').encode()

    icons = icon_set.get("icons", {})
    out = {name: svg(icon) for name, icon in icons.items()}
    for name, alias in icon_set.get("aliases", {}).items():
        if alias.get("parent") in icons and name not in out:
            out[name] = out[alias["parent"]]
    return out


def read_package(tgz: Path, folder: str, licence_file: str) -> tuple[dict[str, bytes], str]:
    """The SVG files directly in `folder` of the tarball (file stem -> bytes), or the icons of its
    ``icons.json`` when it is an Iconify icon set, and its licence text."""
    files, licence, icon_set, package_json = {}, "", None, ""
    with tarfile.open(tgz) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            parent, _, base = m.name.rpartition("/")
            if m.name == licence_file:
                licence = tar.extractfile(m).read().decode("utf-8", "replace")
            elif parent == folder and base.endswith(".svg"):
                files[base[:-4]] = tar.extractfile(m).read()
            elif parent == folder and base == "icons.json":
                icon_set = json.loads(tar.extractfile(m).read())
            elif m.name == "package/package.json":
                package_json = tar.extractfile(m).read().decode("utf-8", "replace")
    if icon_set is not None:
        files.update(iconify_svgs(icon_set))
        if licence and package_json:  # info.json's artwork licence, and the package's own
            licence = (f"info.json license: {json.dumps(json.loads(licence).get('license'))}\n"
                       f"package.json license: {json.loads(package_json).get('license')}")
    if not licence:
        raise FileNotFoundError(f"{tgz.name} has no licence file {licence_file}")
    return files, licence


def cldr_slug(name: str) -> str:
    """'grinning cat with smiling eyes' -> 'grinning-cat-with-smiling-eyes' (Fluent's file names)."""
    name = name.lower().replace("’", "").replace("'", "")
    name = name.translate(str.maketrans("ñãéíåçô", "naeiaco"))
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def candidates(record: dict, naming: str) -> list[str]:
    """File stems that may hold this emoji in a package of the given naming."""
    if naming == "codepoints":
        cps = [f"{ord(c):x}" for c in record["char"]]
        return ["-".join(cps), "-".join(c for c in cps if c != "fe0f")]
    names = [record["name"], *record.get("aliases", [])]
    if naming == "iconify":  # hyphenated names, or Unicode names with the words run together (fxemoji)
        return [s for n in names for s in (cldr_slug(n), cldr_slug(n).replace("-", ""))]
    return [s for n in names for s in (cldr_slug(n), cldr_slug(n) + "-default")]


def rasterise(svg: bytes, size: int) -> np.ndarray:
    """An SVG -> (size, size, 4) uint8 RGBA, drawn by resvg to fit, centred on a transparent square."""
    import resvg_py
    from PIL import Image

    png = resvg_py.svg_to_bytes(svg_string=svg.decode("utf-8"), width=size * 2, skip_system_fonts=True)
    im = Image.open(io.BytesIO(png)).convert("RGBA")
    bbox = im.getbbox()
    if bbox is None:
        raise ValueError("the SVG draws nothing")
    im = im.crop(bbox)
    scale = size / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    out = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    out.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return np.asarray(out, dtype=np.uint8)


def build_style(style: SvgStyle, records: list[dict], tgz: Path, size: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render `style` for every record: glyphs (N, S, S, 4), present (N,) bool, and the style's facts."""
    files, licence = read_package(tgz, style.folder, style.licence_file)
    glyphs = np.zeros((len(records), size, size, 4), np.uint8)
    present = np.zeros(len(records), bool)
    skipped = []
    for i, rec in enumerate(records):
        stem = next((s for s in candidates(rec, style.naming) if s in files), None)
        if stem is None:
            continue
        try:
            glyphs[i] = rasterise(files[stem], size)
            present[i] = True
        except Exception as e:  # resvg raises ValueError for a broken SVG; any failure skips one file
            logger.debug("rasterising %s/%s failed", style.name, stem, exc_info=True)
            print(f"skipped {style.name}/{stem}.svg: {str(e).splitlines()[0][:120]}", file=sys.stderr)
            skipped.append(f"{stem}.svg")
    facts = {"package": style.package, "tarball_sha256": hashlib.sha256(tgz.read_bytes()).hexdigest(),
             "licence": style.licence, "licence_file_text": licence, "files_in_package": len(files),
             "emoji": int(present.sum()), "skipped": skipped}
    return glyphs, present, facts


def build_styles(data_dir: Path, npm_cache: Path, size: int, styles=STYLES, tarballs: dict | None = None) -> dict:
    """Write ``styles/<name>.npy`` and ``styles/<name>.present.npy`` beside the Noto dataset in `data_dir`,
    and ``styles/sources.json`` with each package, its licence and its counts. `tarballs` (style name ->
    path) replaces the npm fetch (tests)."""
    records = json.loads((data_dir / "meta.json").read_text())
    out = data_dir / "styles"
    out.mkdir(exist_ok=True)
    sources = {}
    for style in styles:
        tgz = Path(tarballs[style.name]) if tarballs else fetch_package(style.package, npm_cache)
        glyphs, present, facts = build_style(style, records, tgz, size)
        np.save(out / f"{style.name}.npy", glyphs)
        np.save(out / f"{style.name}.present.npy", present)
        sources[style.name] = facts
    sources["held_out_style"] = HELD_OUT_STYLE
    (out / "sources.json").write_text(json.dumps(sources, indent=1, ensure_ascii=False))
    return {name: f["emoji"] for name, f in sources.items() if isinstance(f, dict)}


def load_styles(data_dir: Path, names: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Style name -> (glyphs (N, S, S, 4), present (N,)) aligned with meta.json; ``noto`` is the base set."""
    out = {}
    for name in names:
        if name == "noto":
            g = np.load(data_dir / "glyphs.npy")
            out[name] = (g, np.ones(len(g), bool))
            continue
        path = data_dir / "styles" / f"{name}.npy"
        if not path.exists():
            raise FileNotFoundError(f"No {name} renders in {data_dir}; make them with "
                                    f"`python -m demo_core.training.emoji_data --out {data_dir}`")
        out[name] = (np.load(path), np.load(data_dir / "styles" / f"{name}.present.npy"))
    return out
