"""Which training data helps on real masked faces? Train one small model per data condition and
score it on held-out real MFSD crops (issue 4, part 4).

    python scripts/synth_evidence.py --out runs/evidence [--conditions synth seg500 ...]
        [--steps 400] [--threads 1] [--synth runs/synth]
        [--split configs/splits/mfsd-dev-cv4/fold0.json]

Conditions (every one: ``abanet_lite``, ImageNet encoder, the hybrid loss, heavy augmentation,
batch 8, the same number of optimisation steps, the same seed):

- ``synth``: ``abanet synth`` pairs alone;
- ``synth-plain``: the same faces and seed, but every mask keeps its template's own colours (no
  recolouring, fabric textures or camouflage): what the colour and texture variation is worth;
- ``synth-clean``: the same, but no occluders (hand, hair), no loose framing and no low-resolution
  rendering: what those degradations are worth;
- ``seg500``: ``maskedface-net-seg500/train`` alone;
- ``real``: the real crops of the split's training part alone (the reference);
- ``synth+real`` / ``seg500+real``: the real crops plus as many synthetic / seg500 pairs per
  epoch (half of each epoch real);
- ``all``: real + synth + seg500 in the shipped model's proportions (configs/default_model.yaml).

Conditions with real crops pick their checkpoint on the split's 12 ``val`` crops; the others on a
5 % slice of their own data (a user without real labels has nothing else). Every model is scored
with ``abanet evaluate`` (paper protocol, per-image mean IoU, masks at 127) on the split's ``test``
crops, which no condition trains on, and the conditions without real crops also on all 136 crops.
Runs are resumable: a finished condition is skipped, an interrupted one continues from its last
checkpoint. Prints a markdown table and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MFSD = "../shared/data/mfsd-dev"
SEG500 = "../shared/data/maskedface-net-seg500/train"


def data_entries(
    cond: str, synth: str, synth_plain: str, synth_clean: str
) -> tuple[list[dict], bool]:
    """``data.train`` entries for a condition and whether the real crops (with the split) lead."""
    real = {"path": MFSD, "repeat": 4}  # ~90 train crops x4 = ~360 per epoch
    table = {
        "synth": ([{"path": synth}], False),
        "synth-plain": ([{"path": synth_plain}], False),
        "synth-clean": ([{"path": synth_clean}], False),
        "seg500": ([{"path": SEG500}], False),
        "real": ([real], True),
        "synth+real": ([real, {"path": synth, "repeat": 0.16}], True),  # 2200 x0.16 = 352
        "seg500+real": ([real, {"path": SEG500, "repeat": 0.8}], True),  # 451 x0.8 = 361
        "all": ([real, {"path": SEG500, "repeat": 0.5}, {"path": synth, "repeat": 0.2}], True),
    }
    if cond not in table:
        raise SystemExit(f"unknown condition {cond!r} (known: {', '.join(table)})")
    return table[cond]


def flow(items: list[dict]) -> str:
    """A data.train list as one YAML flow value for a command-line override."""
    parts = []
    for e in items:
        inner = ", ".join(f"{k}: {v}" for k, v in e.items())
        parts.append("{" + inner + "}")
    return "[" + ", ".join(parts) + "]"


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def read_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/evidence"))
    ap.add_argument(
        "--conditions",
        nargs="+",
        default=["synth", "seg500", "real", "synth+real", "seg500+real"],
    )
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    ap.add_argument("--synth", default="runs/synth", help="abanet synth output folder")
    ap.add_argument(
        "--synth-plain",
        default="runs/synth-plain",
        help="the same, made with --set p_keep_colour=1 --set p_texture=0 --set p_camo=0",
    )
    ap.add_argument(
        "--synth-clean",
        default="runs/synth-clean",
        help="the same, made with --set p_hand=0 --set p_hair=0 --set p_loose=0 --set p_lowres=0",
    )
    ap.add_argument("--split", default="configs/splits/mfsd-dev-cv4/fold0.json")
    ap.add_argument("--config", default="configs/default_model.yaml")
    args = ap.parse_args()
    abanet = [sys.executable, "-m", "abanet"]
    results = {}
    res_path = args.out / "results.json"
    if res_path.exists():
        results = json.loads(res_path.read_text())
    for cond in args.conditions:
        entries, with_real = data_entries(cond, args.synth, args.synth_plain, args.synth_clean)
        run_dir = args.out / cond.replace("+", "_")
        model = run_dir / "model"
        if not (model / "config.json").exists():
            cmd = [
                *abanet, "train", "--config", args.config, f"out={run_dir}",
                f"data.train={flow(entries)}",
                f"trainer.max_steps={args.steps}", "trainer.max_time=null",
                "trainer.val_every_n_steps=50",
            ]  # fmt: skip
            if with_real:
                cmd.append(f"data.split={args.split}")
            else:
                cmd += ["data.split=null", "data.ratios=[0.95,0.05,0.0]"]
            if args.threads:
                cmd.append(f"trainer.cpu_threads={args.threads}")
            if (run_dir / "checkpoints" / "last.ckpt").exists():
                cmd.append("--resume")
            run(cmd)
        scores = {}
        for name, extra in (("test", ["--split", args.split, "--subset", "test"]), ("all", [])):
            if name == "all" and with_real:
                continue
            ev = args.out / "eval" / f"{cond.replace('+', '_')}-{name}"
            if not (ev / "summary.json").exists():
                run([*abanet, "evaluate", "--model", str(model), "--data", MFSD,
                     "--out", str(ev), *extra])  # fmt: skip
            scores[name] = read_summary(ev)["metrics"]
        results[cond] = {"steps": args.steps, "data": entries, "scores": scores}
        args.out.mkdir(parents=True, exist_ok=True)
        tmp = res_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(res_path)
    print("\n| training data | IoU, held-out real crops | F1 | IoU, all 136 real crops |")
    print("|---|---:|---:|---:|")
    for cond, r in results.items():
        t, a = r["scores"]["test"], r["scores"].get("all")
        all_iou = f"{a['iou']:.4f}" if a else "(trained on part)"
        print(f"| {cond} | {t['iou']:.4f} | {t['f1']:.4f} | {all_iou} |")


if __name__ == "__main__":
    main()
