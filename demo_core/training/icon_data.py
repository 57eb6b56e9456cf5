"""Named icons for concept breadth: more drawings of everyday things, openly licensed, from the npm registry.

The emoji give mini-CLIP about 1,500 training concepts with a handful of drawings each (a few cars, a few
cats). Icon sets name thousands of pictograms ("car-side", "sitting-dog", "palm-tree"); a CLIP run may
take a share of each batch from them (``train_clip --icon-share``). Two Iconify sets, fetched with
``npm pack`` like the emoji styles:

| set | package | licence |
|---|---|---|
| ``game-icons`` | ``@iconify-json/game-icons`` 1.2.4 (game-icons.net: Lorc, Delapouite and contributors) | CC-BY 3.0 |
| ``mdi`` | ``@iconify-json/mdi`` 1.2.3 (Pictogrammers' Material Design Icons) | Apache-2.0 |

Which icons: names without digits, of at most three words, none of them a user-interface modifier
(``outline``, ``off``, ``plus``, ``arrow``…: "car-off" is a crossed-out car, not a car). **No icon is named
like a held-out emoji** (its name or an alias, ignoring case and punctuation): the evaluation's held-out
emoji never appear, in any drawing, under their own name. Words such as "dog" or "car" still do, as they
already did in training emoji names ("dog face", "police car").

``python -m demo_core.training.icon_data --data data/emoji`` writes ``icons/icons.npy`` (N, S, S, 4 RGBA,
black pictograms on transparent), ``icons/icons.json`` (name, set, icon) and ``icons/sources.json``
(package, tarball sha256, the licence as ``info.json`` and ``package.json`` state it, counts).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .emoji_styles import cldr_slug, fetch_package, rasterise, read_package

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IconSet:
    name: str
    package: str  # npm name@version
    licence: str  # what the card says


ICON_SETS = (
    IconSet("game-icons", "@iconify-json/game-icons@1.2.4",
            "game-icons.net icons by Lorc, Delapouite and contributors (https://game-icons.net), CC-BY 3.0 "
            "(https://creativecommons.org/licenses/by/3.0/); Iconify's JSON of the set, CC-BY-3.0."),
    IconSet("mdi", "@iconify-json/mdi@1.2.3",
            "Material Design Icons by Pictogrammers (https://pictogrammers.com), Apache-2.0; Iconify's JSON of "
            "the set, Apache-2.0."),
)

# Words that make an icon a user-interface symbol rather than a picture of a thing.
UI_WORDS = frozenset("""outline off plus minus remove check alert variant box circle arrow arrows cog lock
edit sync refresh upload download settings search multiple cancel account marker sharp thick thin bold open
close closed network wireless alpha numeric format view file folder link question information cross export
import add delete star-outline filled half left right up down top bottom horizontal vertical""".split())


def icon_name_ok(icon: str) -> bool:
    words = icon.split("-")
    return not re.search(r"\d", icon) and len(words) <= 3 and not set(words) & UI_WORDS


def held_out_slugs(records: list[dict]) -> set[str]:
    """The held-out emoji's names and aliases as slugs ('see-no-evil monkey' -> 'see-no-evil-monkey')."""
    return {cldr_slug(n) for r in records if r["split"] == "heldout" for n in [r["name"], *r.get("aliases", [])]}


def build_icons(data_dir: Path, npm_cache: Path, size: int, sets=ICON_SETS, tarballs: dict | None = None) -> dict:
    """Render the chosen icons of every set into ``data_dir/icons``; `tarballs` (set -> path) replaces npm."""
    records = json.loads((data_dir / "meta.json").read_text())
    banned = held_out_slugs(records)
    glyphs, meta, sources = [], [], {}
    for icon_set in sets:
        tgz = Path(tarballs[icon_set.name]) if tarballs else fetch_package(icon_set.package, npm_cache)
        files, licence = read_package(tgz, "package", "package/info.json")
        names = sorted(n for n in files if icon_name_ok(n))
        excluded = [n for n in names if cldr_slug(n) in banned]
        skipped = []
        for name in names:
            if name in excluded:
                continue
            try:
                glyphs.append(rasterise(files[name], size))
            except Exception as e:  # a broken drawing skips one icon, with a line
                logger.debug("rasterising %s/%s failed", icon_set.name, name, exc_info=True)
                print(f"skipped {icon_set.name}/{name}: {str(e).splitlines()[0][:120]}", file=sys.stderr)
                skipped.append(name)
                continue
            meta.append({"name": name.replace("-", " "), "set": icon_set.name, "icon": name})
        sources[icon_set.name] = {
            "package": icon_set.package, "tarball_sha256": hashlib.sha256(tgz.read_bytes()).hexdigest(),
            "licence": icon_set.licence, "licence_file_text": licence, "icons_in_package": len(files),
            "kept": len(names) - len(excluded) - len(skipped), "excluded_as_held_out_names": excluded,
            "skipped": skipped}
    out = data_dir / "icons"
    out.mkdir(exist_ok=True)
    np.save(out / "icons.npy", np.stack(glyphs) if glyphs else np.zeros((0, size, size, 4), np.uint8))
    (out / "icons.json").write_text(json.dumps(meta, indent=0))
    (out / "sources.json").write_text(json.dumps(sources, indent=1, ensure_ascii=False))
    return {name: f["kept"] for name, f in sources.items()}


def load_icons(data_dir: Path) -> tuple[np.ndarray, list[dict]]:
    """(glyphs (N, S, S, 4) uint8, records with name, aliases, keywords, set) of the rendered icons."""
    folder = Path(data_dir) / "icons"
    if not (folder / "icons.json").exists():
        raise FileNotFoundError(f"No icons in {data_dir}; render them with "
                                f"`python -m demo_core.training.icon_data --data {data_dir}`")
    meta = json.loads((folder / "icons.json").read_text())
    records = [{"name": m["name"], "aliases": [], "keywords": [], "split": "train", "style": "icons:" + m["set"]}
               for m in meta]
    return np.load(folder / "icons.npy"), records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_core.training.icon_data", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/emoji", help="the emoji dataset folder (its held-out names are kept out)")
    ap.add_argument("--npm-cache", default="data/npm", help="where the npm tarballs are kept (default: data/npm)")
    ap.add_argument("--size", type=int, default=96, help="stored icon size in pixels (the emoji glyphs' size)")
    args = ap.parse_args(argv)
    try:
        counts = build_icons(Path(args.data), Path(args.npm_cache), args.size)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
