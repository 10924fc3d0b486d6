"""Copy a trained model into the package as a shipped model, with its card facts in the config.

    python scripts/default_model/package_model.py runs/final/model abanet_lite_mfsd \
        --cv runs/cv-eval/cv.json --default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from abanet.models.hub import DEFAULT_MODEL_FILE, WEIGHTS_DIR, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="trained model folder (runs/<run>/model)")
    ap.add_argument("name", help="shipped name, e.g. abanet_lite_mfsd")
    ap.add_argument("--cv", type=Path, help="summarize_cv.py --json output")
    ap.add_argument("--default", action="store_true", help="make it the default model")
    args = ap.parse_args()
    model = load_model(args.model)
    meta = dict(model.config.metadata)
    meta["shipped_name"] = args.name
    meta["model_card"] = "docs/model_card.md"
    meta["licence_note"] = "research use: trained on CC BY-NC-SA and unclear-rights data"
    if args.cv:
        meta["cross_validation"] = json.loads(args.cv.read_text())
    model.config.metadata = {}
    out = model.save_pretrained(WEIGHTS_DIR / args.name, **meta)
    if args.default:
        DEFAULT_MODEL_FILE.write_text(args.name + "\n")
    print(out)


if __name__ == "__main__":
    main()
