"""``abanet synth``: synthetic masked-face pairs; ``abanet synth-grid``: a contact sheet of them."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        faces: Path = typer.Option(
            ..., "--faces", help="Folder of unmasked face crops (recursive)."
        ),
        out: Path = typer.Option(..., "--out", help="Output folder: images/, masks/, synth.json."),
        n: int = typer.Option(..., "-n", "--n", help="Number of pairs to make."),
        seed: int = typer.Option(0, "--seed", help="Same seed, same bytes (any --workers)."),
        workers: int = typer.Option(1, "--workers", "-w", help="Parallel processes."),
        size: int = typer.Option(256, "--size", help="Output side in pixels (square)."),
        templates: Path | None = typer.Option(
            None,
            "--templates",
            help="Mask-templates folder (masks.cfg, templates/, textures/); "
            "default ../shared/data/mask-templates.",
        ),
        landmarks: Path | None = typer.Option(
            None,
            "--landmarks",
            help="JSON of precomputed 68-point landmarks per face file (instead of the face mesh).",
        ),
        occluder_label: str = typer.Option(
            "mfsd",
            "--occluder-label",
            help="'mfsd': a hand over the mask counts as mask (MFSD's convention); "
            "'exclude': occluders are never mask.",
        ),
        settings: list[str] = typer.Option(
            [],
            "--set",
            help="A synthesis knob KEY=VALUE (repeatable), e.g. --set p_texture=0: "
            "see abanet.synth.SynthOptions (p_keep_colour, p_texture, p_camo, p_hand, p_hair, "
            "p_loose, p_lowres, max_rotation, anchor_jitter).",
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Put mask templates on real faces by landmarks: OUT/images/*.jpg + OUT/masks/*.png."""
        from abanet.synth import generate
        from abanet.synth.render import options_from_settings

        options = options_from_settings(settings, size=size, occluder_label=occluder_label)
        report = generate(
            faces,
            out,
            n,
            seed,
            templates_dir=templates,
            workers=workers,
            size=size,
            overwrite=overwrite,
            landmarks_file=landmarks,
            options=options,
            progress=progress,
        )
        typer.echo(
            f"faces: {report.faces_usable}/{report.faces_total} usable"
            + (f", skipped {report.faces_skipped_by_reason}" if report.faces_skipped else "")
        )
        typer.echo(
            f"pairs: {report.written} written, {report.existing} already there, "
            f"{report.skipped} skipped"
            + (f" {report.skipped_by_reason}" if report.skipped else "")
            + f" in {report.seconds:.1f} s -> {report.out_dir}"
        )

    @app.command("synth-grid")
    def synth_grid(
        pairs: Path = typer.Argument(..., help="A folder written by 'abanet synth'."),
        dest: Path = typer.Option(..., "--dest", help="Output JPEG."),
        count: int = typer.Option(24, "--count", help="Pairs shown."),
        cols: int = typer.Option(8, "--cols"),
        tile: int = typer.Option(128, "--tile", help="Tile side in pixels."),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ) -> None:
        """A contact sheet: each image above itself with the mask outlined."""
        from abanet.synth.grid import make_grid

        path = make_grid(pairs, dest, count=count, cols=cols, tile=tile, overwrite=overwrite)
        typer.echo(f"wrote {path} ({path.stat().st_size // 1024} KB)")
