"""Local folders laid out as Hugging Face hub data set repositories, for tests without the network.

`write_repo(mirror, "owner/name", {config: {split: Dataset}})` writes what the hub serves for a parquet
repository: `<config>/<split>-00000-of-00001.parquet` files (features, ClassLabel names included, in the
parquet metadata as `datasets` writes them) and a README.md whose YAML `configs:` lists the data files.
With `revision`, the snapshot goes to `<mirror>/<owner>/<name>@<revision>` (`data.hub_mirror`).
"""

from __future__ import annotations

from pathlib import Path


def write_repo(mirror: Path, hf_id: str, configs: dict, *, revision: str | None = None) -> Path:
    folder = mirror / (f"{hf_id}@{revision}" if revision else hf_id)
    folder.mkdir(parents=True, exist_ok=True)
    card = ["---", "configs:"]
    for config, splits in configs.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, dataset in splits.items():
            name = f"{config}/{split}-00000-of-00001.parquet"
            (folder / config).mkdir(exist_ok=True)
            dataset.to_parquet(str(folder / name))
            card += [f"  - split: {split}", f"    path: {name}"]
    card.append("---")
    (folder / "README.md").write_text("\n".join(card) + "\n", encoding="utf-8")
    return folder


def write_script_repo(mirror: Path, hf_id: str) -> Path:
    """A repository that ships only a loading script (as allenai/social_i_qa, Davlan/sib200 do)."""
    folder = mirror / hf_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{hf_id.split('/')[1]}.py").write_text("import datasets\n# a loading script\n", encoding="utf-8")
    (folder / "README.md").write_text("# data set card\n", encoding="utf-8")
    return folder
