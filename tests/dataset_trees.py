"""Small dataset roots in the documented shapes (docs/DATASETS.md): every video a hard
link to one tiny video, label and split files written in each dataset's own format. Each
builder returns the tree with the label and split of every video it made, known from how it
was built: an official split by name, a seeded one as the splits it may take ("train|val")."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

TRAIN_OR_VAL = "train|val"
ANY_SPLIT = "train|val|test"


@dataclass
class Tree:
    dataset: str
    root: Path
    videos: dict[str, tuple[int, str]] = field(default_factory=dict)  # video id -> (label, split or splits)
    options: dict = field(default_factory=dict)  # SourceOptions fields
    roots: tuple[Path, ...] = ()  # every root a record's path may lie under

    def __post_init__(self):
        self.roots = self.roots or (self.root,)

    def add(self, video: Path, root: Path, relative: str, label: int, split: str) -> None:
        link(video, root / relative)
        self.videos[str(Path(relative).with_suffix(""))] = (label, split)

    def cli_options(self) -> list[str]:
        flags = {"comp": "--comp", "methods": "--methods", "splits_dir": "--splits", "ffpp_root": "--ffpp-root", "labels_csv": "--labels",
                 "identity_disjoint": "--identity-disjoint", "val_share": "--val-share"}
        out = []
        for name, value in self.options.items():
            if value is True:
                out.append(flags[name])
            else:
                out += [flags[name], ",".join(value) if name == "methods" else str(value)]
        return out


def link(video: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.link(video, path)
    return path


FFPP_PAIRS = {"train": [["000", "001"], ["002", "003"]], "val": [["004", "005"]], "test": [["006", "007"]]}
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


def ffpp(root: Path, video: Path, comp_folder: str = "c23", methods=FFPP_METHODS, masks=("Deepfakes",)) -> Tree:
    """Reals and fakes of every pair in FFPP_PAIRS, split files under `splits/`, masks for some methods."""
    tree = Tree("ffpp", root, options={"comp": "raw" if comp_folder == "c0" else comp_folder})
    (root / "splits").mkdir(parents=True)
    for split, pairs in FFPP_PAIRS.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(pairs))
        for target, source in pairs:
            for real in (target, source):
                tree.add(video, root, f"original_sequences/youtube/{comp_folder}/videos/{real}.mp4", 0, split)
            for method in methods:
                for stem in (f"{target}_{source}", f"{source}_{target}"):
                    tree.add(video, root, f"manipulated_sequences/{method}/{comp_folder}/videos/{stem}.mp4", 1, split)
                    if method in masks:
                        link(video, root / "manipulated_sequences" / method / "masks" / "videos" / f"{stem}.mp4")
    return tree


# DeepFakeDetection: actor reals `<actor>__<scene>`, fakes `<t>_<s>__<scene>__<8 chars>`, no official split.
DFD_REALS = ("01__walking_outside", "01__talking_kitchen", "02__walking_outside", "03__podium_speech")
DFD_FAKES = ("01_02__walking_outside__YVGY8LOK", "01_03__talking_kitchen__AB12CD34", "02_01__walking_outside__ZZTOP999",
             "03_02__podium_speech__Q1W2E3R4")


def add_dfd(tree: Tree, video: Path) -> Tree:
    for stem in DFD_REALS:
        tree.add(video, tree.root, f"original_sequences/actors/c23/videos/{stem}.mp4", 0, ANY_SPLIT)
    for stem in DFD_FAKES:
        tree.add(video, tree.root, f"manipulated_sequences/DeepFakeDetection/c23/videos/{stem}.mp4", 1, ANY_SPLIT)
    tree.options["methods"] = FFPP_METHODS + ("DeepFakeDetection",)
    return tree


# Celeb-DF: identities id0 and id1 are in the test list; the other videos showing them are in
# train or val by default, and left out with identity_disjoint.
CELEBDF_FILES = {
    "Celeb-real": ("id0_0000", "id0_0001", "id1_0000", "id2_0000", "id3_0000", "id4_0000", "id5_0000"),
    "YouTube-real": ("00000", "00001", "00002"),
    "Celeb-synthesis": ("id0_id1_0000", "id1_id0_0000", "id0_id2_0001", "id2_id3_0000", "id3_id2_0000", "id4_id5_0000", "id5_id4_0000"),
}
# The official inverted convention: 1 real, 0 fake.
CELEBDF_TEST_LIST = ("1 YouTube-real/00000.mp4", "1 Celeb-real/id0_0000.mp4", "1 Celeb-real/id1_0000.mp4",
                     "0 Celeb-synthesis/id0_id1_0000.mp4", "0 Celeb-synthesis/id1_id0_0000.mp4")
CELEBDF_SHARING_TEST_IDENTITIES = ("Celeb-real/id0_0001", "Celeb-synthesis/id0_id2_0001")


def celebdf(root: Path, video: Path, dataset: str = "celebdf", identity_disjoint: bool = False) -> Tree:
    tree = Tree(dataset, root, options={"identity_disjoint": True} if identity_disjoint else {})
    listed = {line.split(" ")[1].removesuffix(".mp4") for line in CELEBDF_TEST_LIST}
    for folder, stems in CELEBDF_FILES.items():
        for stem in stems:
            relative = f"{folder}/{stem}"
            tree.add(video, root, relative + ".mp4", int(folder == "Celeb-synthesis"), "test" if relative in listed else TRAIN_OR_VAL)
    if identity_disjoint:
        for left_out in CELEBDF_SHARING_TEST_IDENTITIES:
            del tree.videos[left_out]
    (root / "List_of_testing_videos.txt").write_text("\n".join(CELEBDF_TEST_LIST) + "\n")
    return tree


# DFDC: part 0 flat, part 1 nested as unzipped, part 2 flat; c0fakecros's original is in part 1.
DFDC_PARTS = {
    "dfdc_train_part_0": {"a0realaaaa.mp4": {"label": "REAL"}, "b0fakebbbb.mp4": {"label": "FAKE", "original": "a0realaaaa.mp4"},
                          "c0fakecros.mp4": {"label": "FAKE", "original": "d1realdddd.mp4"}},
    "dfdc_train_part_01/dfdc_train_part_1": {"d1realdddd.mp4": {"label": "REAL"}, "e1realeeee.mp4": {"label": "REAL"},
                                             "f1fakeffff.mp4": {"label": "FAKE", "original": "d1realdddd.mp4"}},
    "dfdc_train_part_2": {"g2realgggg.mp4": {"label": "REAL"}, "h2fakehhhh.mp4": {"label": "FAKE", "original": "g2realgggg.mp4"}},
}
DFDC_TEST_LABELS = {"t0realtttt.mp4": 0, "t1fakeuuuu.mp4": 1, "t2fakevvvv.mp4": 1}


def dfdc(root: Path, video: Path) -> Tree:
    tree = Tree("dfdc", root)
    for part, entries in DFDC_PARTS.items():
        for name, info in entries.items():
            tree.add(video, root, f"{part}/{name}", int(info["label"] == "FAKE"), TRAIN_OR_VAL)
        (root / part / "metadata.json").write_text(json.dumps({n: {**i, "split": "train"} for n, i in entries.items()}))
    for name, label in DFDC_TEST_LABELS.items():
        tree.add(video, root, f"test/{name}", label, "test")
    (root / "test" / "labels.csv").write_text("filename,label\n" + "".join(f"{n},{label}\n" for n, label in DFDC_TEST_LABELS.items()))
    return tree


# DFDC preview: identity 103 is the test set.
DFDCP_FILES = {
    "original_videos/100/1000001.mp4": ("real", "train"), "original_videos/101/1010001.mp4": ("real", "train"),
    "original_videos/102/1020001.mp4": ("real", "train"), "original_videos/103/1030001.mp4": ("real", "test"),
    "method_A/100/100_A/1000001_A_001.mp4": ("fake", "train"), "method_A/101/101_A/1010001_A_001.mp4": ("fake", "train"),
    "method_B/102/102_C/1020001_C_001.mp4": ("fake", "train"), "method_A/103/103_A/1030001_A_001.mp4": ("fake", "test"),
    "method_B/103/103_C/1030001_C_001.mp4": ("fake", "test"),
}


def dfdcp(root: Path, video: Path) -> Tree:
    tree = Tree("dfdcp", root)
    for relative, (label, set_name) in DFDCP_FILES.items():
        tree.add(video, root, relative, int(label == "fake"), "test" if set_name == "test" else TRAIN_OR_VAL)
    listing = {relative: {"label": label, "set": set_name, "augmentations": {}} for relative, (label, set_name) in DFDCP_FILES.items()}
    (root / "dataset.json").write_text(json.dumps(listing))
    return tree


DEEPERFORENSICS_LISTS = {"train": ("000_M101.mp4", "001_W102.mp4"), "val": ("002_M103.mp4",), "test": ("003_W104.mp4",)}
DEEPERFORENSICS_VARIANTS = ("end_to_end", "end_to_end_level_1")


def deeperforensics(root: Path, video: Path, ffpp_root: Path) -> Tree:
    """Two variants of every listed fake, and a FaceForensics++ root with the targets' reals
    (and one more real, 004, that no fake uses)."""
    tree = Tree("deeperforensics", root, options={"ffpp_root": str(ffpp_root)}, roots=(root, ffpp_root))
    (root / "lists" / "splits").mkdir(parents=True)
    for split, names in DEEPERFORENSICS_LISTS.items():
        (root / "lists" / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            for variant in DEEPERFORENSICS_VARIANTS:
                tree.add(video, root, f"manipulated_videos/{variant}/{name}", 1, split)
            tree.add(video, ffpp_root, f"original_sequences/youtube/c23/videos/{name.split('_')[0]}.mp4", 0, split)
    link(video, ffpp_root / "original_sequences" / "youtube" / "c23" / "videos" / "004.mp4")
    return tree


FOLDER_CSV = (
    ("clips/p1/a.mp4", 0, "train", "p1"), ("clips/p1/b.mp4", 1, "train", "p1"), ("clips/p2/c.mkv", 0, "val", "p2"),
    ("clips/p2/d.mp4", 1, "val", "p2"), ("clips/p3/e.mp4", 0, "test", "p3"), ("clips/p3/f.avi", 1, "test", "p3"),
)


def folder_csv(root: Path, video: Path) -> Tree:
    tree = Tree("folder", root, options={"labels_csv": str(root / "labels.csv")})
    for path, label, split, _ in FOLDER_CSV:
        tree.add(video, root, path, label, split)
    (root / "labels.csv").write_text("path,label,split,group\n" + "".join(",".join(map(str, row)) + "\n" for row in FOLDER_CSV))
    return tree


def folder_real_fake(root: Path, video: Path) -> Tree:
    """The UADFV shape: `real/0000.mp4` and `fake/0000_fake.mp4`, no split files."""
    tree = Tree("folder", root)
    for stem in ("0000", "0001", "0002"):
        tree.add(video, root, f"real/{stem}.mp4", 0, ANY_SPLIT)
        tree.add(video, root, f"fake/{stem}_fake.mp4", 1, ANY_SPLIT)
    return tree


def all_trees(base: Path, video: Path) -> list[Tree]:
    """One tree of every dataset, each in its own folder under base."""
    return [
        add_dfd(ffpp(base / "ffpp", video), video),
        celebdf(base / "celebdf", video),
        celebdf(base / "celebdf-v1", video, dataset="celebdf-v1"),
        dfdc(base / "dfdc", video),
        dfdcp(base / "dfdcp", video),
        deeperforensics(base / "deeperforensics", video, base / "ffpp-for-deeperforensics"),
        folder_csv(base / "folder", video),
    ]
