"""dfprep command line: parse, call one function, print."""

from __future__ import annotations

import json
import sys

import click

from pipeline.profiles import PROFILES, get_profile
from pipeline.sources import SOURCES
from pipeline.sources.base import SourceOptions
from stages.errors import ConfigError, StoreLocked


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Deepfake-detection preprocessing into a cached Zarr feature store."""


@cli.command()
@click.option("--dataset", required=True, type=click.Choice(sorted(SOURCES)), help="Dataset layout of --root.")
@click.option("--root", required=True, help="Dataset root folder (demo: where the corpus is written).")
@click.option("--store", required=True, help="Feature store path or fsspec URL.")
@click.option("--profile", default="default", show_default=True, type=click.Choice(list(PROFILES)))
@click.option("--set", "overrides", multiple=True, metavar="STAGE.FIELD=VALUE", help="Override a stage parameter, e.g. flow.winsize=21.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes of the local cluster [default: one per core].")
@click.option("--scheduler", help="Address of a running Dask scheduler, e.g. tcp://host:8786.")
@click.option("--limit", type=click.IntRange(min=1), help="Process only the first N videos.")
@click.option("--force", is_flag=True, help="Recompute every video, changed or not.")
@click.option("--retry-failed", is_flag=True, help="Try videos that failed before again.")
@click.option("--video-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Record a video still reading or computing after this long as failed: timeout, and go on [default: no limit].")
@click.option("--strict", is_flag=True, help="Exit 1 if any video failed.")
@click.option("--seed", default=0, show_default=True, help="Seed of the split for datasets without an official one.")
@click.option("--labels", "labels_csv", help="folder: a CSV of path,label[,split][,group] instead of real/ and fake/.")
@click.option("--split-ratios", type=(float, float, float), default=(0.8, 0.1, 0.1), show_default=True,
              metavar="TRAIN VAL TEST", help="Ratios of the seeded split where a dataset has no official one.")
@click.option("--comp", default="c23", show_default=True, type=click.Choice(["raw", "c0", "c23", "c40"]),
              help="ffpp, deeperforensics: FaceForensics++ compression (c0 is raw).")
@click.option("--methods", help="ffpp: comma-separated methods [default: Deepfakes,Face2Face,FaceSwap,NeuralTextures]; "
              "deeperforensics: variants [default: all].")
@click.option("--splits", "splits_dir", help="ffpp, deeperforensics: folder of the official split files.")
@click.option("--ffpp-root", help="deeperforensics: the FaceForensics++ root holding its real videos.")
def features(dataset, root, store, profile, overrides, workers, scheduler, limit, force, retry_failed, video_timeout, strict, seed,
             labels_csv, split_ratios, comp, methods, splits_dir, ffpp_root):
    """Build or update the feature store from a dataset."""
    from pipeline.run import FeaturesRequest, build_features

    request = FeaturesRequest(
        dataset=dataset, root=root, store=store, profile=get_profile(profile, list(overrides)),
        workers=workers, scheduler=scheduler, limit=limit, force=force, retry_failed=retry_failed,
        video_timeout_s=video_timeout,
        source_options=SourceOptions(
            seed=seed, labels_csv=labels_csv, split_ratios=split_ratios, comp=comp, splits_dir=splits_dir, ffpp_root=ffpp_root,
            methods=tuple(name.strip() for name in methods.split(",")) if methods else None,
        ),
    )
    summary = build_features(request, on_inventory=_print_inventory)
    click.echo(summary.table())
    if strict and summary.statuses["failed"]:
        sys.exit(1)


def _print_inventory(inventory) -> None:
    click.echo(inventory.table())
    for warning in inventory.warnings:
        click.echo(f"dfprep: warning: {warning}", err=True)


@cli.command()
@click.option("--store", required=True, help="Feature store path or URL.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a video.")
@click.option("--rebuild", is_flag=True, help="Rebuild the manifest from the stored groups first.")
def status(store, as_json, rebuild):
    """Counts by status, and every video that is not done with its reason."""
    from pipeline.report import status_rows, status_text

    rows = status_rows(store, rebuild)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
    else:
        click.echo(status_text(rows))


@cli.command()
@click.option("--store", required=True, help="Feature store path or URL.")
@click.argument("video_id")
@click.option("--out", required=True, help="PNG file to write.")
def show(store, video_id, out):
    """Contact sheet of one video: crops, HSV-coded flow, the face track on a thumbnail."""
    from pipeline.report import write_contact_sheet

    click.echo(write_contact_sheet(store, video_id, out))


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes print one line and exit 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="dfprep", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dfprep: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"dfprep: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        click.echo(f"dfprep: error: {exc}", err=True)
        sys.exit(2)
    except StoreLocked as exc:
        click.echo(f"dfprep: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
