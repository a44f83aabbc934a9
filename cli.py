"""dfprep command line: parse, call one function, print."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from feature_store.schema import Status
from pipeline.limits import VIDEO_TIMEOUT_S, WORKER_MEMORY
from pipeline.profiles import PROFILES, get_profile
from pipeline.sources import SOURCES
from pipeline.sources.base import SourceOptions
from pipeline.terminal import printable
from stages.errors import ConfigError, Diverged, StoreError, StoreLocked


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Deepfake-detection preprocessing into a cached Zarr feature store, and the detectors
    that train on it."""


@cli.command()
@click.option("--dataset", required=True, type=click.Choice(sorted(SOURCES)), help="Dataset layout of --root.")
@click.option("--root", required=True, help="Dataset root folder (demo: where the corpus is written).")
@click.option("--store", required=True, help="Feature store path or fsspec URL.")
@click.option("--profile", default="default", show_default=True, type=click.Choice(list(PROFILES)))
@click.option("--set", "overrides", multiple=True, metavar="STAGE.FIELD=VALUE", help="Override a stage parameter, e.g. flow.winsize=21.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes of the local cluster [default: one per core].")
@click.option("--scheduler", envvar="DASK_SCHEDULER_ADDRESS", show_envvar=True,
              help="Address of a running Dask scheduler, e.g. tcp://host:8786.")
@click.option("--cluster", type=click.Choice(["slurm", "pbs", "sge"]), help="Start workers as jobs of this HPC queue (dask-jobqueue).")
@click.option("--cluster-config", metavar="FILE.yaml", help="--cluster: the jobs' options and adapt: bounds (see examples/slurm.yaml).")
@click.option("--limit", type=click.IntRange(min=1), help="Process only the first N videos.")
@click.option("--force", is_flag=True, help="Recompute every video, changed or not.")
@click.option("--retry-failed", is_flag=True, help="Try videos that failed before again.")
@click.option("--video-timeout", type=click.FloatRange(min=0), default=VIDEO_TIMEOUT_S, show_default=True, metavar="SECONDS",
              help="Record a video still reading or computing after this long as failed: timeout, and go on (0: no limit).")
@click.option("--worker-memory", default=WORKER_MEMORY, show_default=True, metavar="SIZE",
              help="Local cluster: memory a worker process may use before it is restarted (0: no limit).")
@click.option("--dashboard-address", metavar="HOST:PORT",
              help="Where the dashboard of a cluster dfprep starts listens [default: 127.0.0.1, a free port].")
@click.option("--strict", is_flag=True, help="Exit 1 if any video failed.")
@click.option("--seed", default=0, show_default=True, help="Seed of the split for datasets without an official one.")
@click.option("--labels", "labels_csv", help="folder: a CSV of path,label[,split][,group] instead of real/ and fake/ "
              "(label 0 real, 1 fake, empty unknown).")
@click.option("--val-share", default=0.1, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="folder: share of the train groups made val when --labels names train but no val.")
@click.option("--split-ratios", type=(float, float, float), default=(0.8, 0.1, 0.1), show_default=True,
              metavar="TRAIN VAL TEST", help="Ratios of the seeded split where a dataset has no official one.")
@click.option("--comp", default="c23", show_default=True, type=click.Choice(["raw", "c0", "c23", "c40"]),
              help="ffpp, deeperforensics: FaceForensics++ compression (c0 is raw).")
@click.option("--methods", help="ffpp: comma-separated methods [default: Deepfakes,Face2Face,FaceSwap,NeuralTextures]; "
              "deeperforensics: variants [default: all].")
@click.option("--splits", "splits_dir", help="ffpp, deeperforensics: folder of the official split files.")
@click.option("--ffpp-root", help="deeperforensics: the FaceForensics++ root holding its real videos.")
@click.option("--identity-disjoint", is_flag=True,
              help="celebdf: leave out of train and val every video showing an identity of the official test list.")
def features(dataset, root, store, profile, overrides, workers, scheduler, cluster, cluster_config, limit, force, retry_failed,
             video_timeout, worker_memory, dashboard_address, strict, seed, labels_csv, val_share, split_ratios, comp, methods,
             splits_dir, ffpp_root, identity_disjoint):
    """Build or update the feature store from a dataset."""
    from pipeline.cluster import jobqueue_spec
    from pipeline.run import FeaturesRequest, build_features

    if cluster and scheduler:
        raise click.UsageError(f"--cluster {cluster} starts its own scheduler; it cannot be used with --scheduler "
                               f"or DASK_SCHEDULER_ADDRESS ({scheduler})")
    if cluster_config and not cluster:
        raise click.UsageError("--cluster-config needs --cluster slurm|pbs|sge")
    if dashboard_address and scheduler:
        raise click.UsageError(f"--dashboard-address: a running cluster ({scheduler}) keeps its own dashboard")

    request = FeaturesRequest(
        dataset=dataset, root=root, store=store, profile=get_profile(profile, list(overrides)),
        workers=workers, scheduler=scheduler, cluster=jobqueue_spec(cluster, cluster_config) if cluster else None,
        limit=limit, force=force, retry_failed=retry_failed, video_timeout_s=video_timeout or None,
        worker_memory=worker_memory, dashboard_address=dashboard_address,
        source_options=SourceOptions(
            seed=seed, labels_csv=labels_csv, split_ratios=split_ratios, comp=comp, splits_dir=splits_dir, ffpp_root=ffpp_root,
            identity_disjoint=identity_disjoint, val_share=val_share,
            methods=tuple(name.strip() for name in methods.split(",")) if methods else None,
        ),
    )
    summary = build_features(request, on_inventory=_print_inventory, on_dashboard=lambda link: click.echo(f"dashboard: {link}"))
    click.echo(summary.table())
    if strict and summary.statuses[Status.FAILED]:
        sys.exit(1)


def _print_inventory(inventory) -> None:
    click.echo(inventory.table())
    for warning in inventory.warnings:
        click.echo(f"dfprep: warning: {printable(warning)}", err=True)


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
            click.echo(json.dumps(row.to_json(), sort_keys=True))
    else:
        click.echo(status_text(rows))


@cli.command()
@click.option("--store", required=True, help="Feature store path or URL.")
@click.argument("video_id")
@click.option("--out", required=True, help="PNG file to write.")
def show(store, video_id, out):
    """Contact sheet of one video: crops, HSV-coded flow, the face track on a thumbnail."""
    from pipeline.report import write_contact_sheet

    click.echo(printable(write_contact_sheet(store, video_id, out)))


@cli.command()
@click.option("--store", required=True, help="Feature store built with the model's profile.")
@click.option("--model", required=True, help="Detector name (see `dfprep models`).")
@click.option("--out", required=True, help="Run folder: checkpoints, curves.png, val/ metrics.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the paper's number of epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Override the paper's batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Override the paper's learning rate.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), help="Override the paper's optimiser.")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="Override the paper's weight decay.")
@click.option("--loss", help="Override the paper's loss: mse, bce, bce_softf1 (one-logit models), ce, gml.")
@click.option("--iterations", type=click.IntRange(min=1), help="Train at least this many steps (whole epochs) instead of --epochs.")
@click.option("--class-weights/--no-class-weights", default=None,
              help="Weight classes by n / (2 n_class) in the loss [default: where the paper does; see `dfprep models`].")
@click.option("--bn-batches", type=click.IntRange(min=0),
              help="Training batches that set batch-norm statistics before each val pass; 0 keeps the running averages [default: 100].")
@click.option("--input", "inputs", multiple=True, metavar="FIELD=VALUE", help="Override the model's input spec, e.g. size=128x128.")
@click.option("--seed", default=0, show_default=True, help="Seeds weights, shuffling, dropout and augmentation.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0), help="DataLoader worker processes.")
@click.option("--amp", is_flag=True, help="Mixed precision (float16 on CUDA, bfloat16 on CPU).")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (for GPU runs).")
@click.option("--pretrained", help="A local weight file or dfprep checkpoint to start from.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
def train(store, model, out, epochs, batch_size, lr, optimizer, weight_decay, loss, iterations, class_weights, bn_batches, inputs, seed,
          device, workers, amp, compile_model, pretrained, resume):
    """Train a detector on the train split, selecting the epoch on val."""
    from trainer.loop import TrainRequest, train as run_training

    recipe = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "weight_decay": weight_decay, "loss": loss,
              "iterations": iterations, "class_weights": class_weights, "bn_batches": bn_batches}
    recipe = {field: value for field, value in recipe.items() if value is not None}
    result = run_training(TrainRequest(
        store=store, model=model, out=out, recipe=recipe, inputs=inputs, seed=seed, device=device, workers=workers,
        amp=amp, compile=compile_model, pretrained=pretrained, resume=resume,
    ))
    click.echo(f"best epoch {result.best_epoch} of {len(result.history)}; checkpoint {printable(result.out / 'best.pt')}")
    click.echo(metrics_text(result.val_metrics))


@cli.command()
@click.option("--checkpoint", required=True, help="A checkpoint written by train (best.pt).")
@click.option("--store", required=True, help="Feature store to score.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", help="Folder for metrics.json, roc.png, curves.png [default: beside the checkpoint, named after the split].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0), help="DataLoader worker processes.")
@click.option("--thresholds-from", default="checkpoint", show_default=True, metavar="checkpoint|val",
              help="checkpoint: the thresholds chosen on the training store's val; val: chosen again on this store's val.")
def evaluate(checkpoint, store, split, out, device, workers, thresholds_from):
    """Metrics of a checkpoint on a split, at the thresholds of its training data's val."""
    from trainer.evaluate import EvaluateRequest, evaluate as run_evaluation

    click.echo(metrics_text(run_evaluation(EvaluateRequest(checkpoint, store, split, out, device, workers, thresholds_from))))


@cli.command()
@click.option("--checkpoint", required=True, help="A checkpoint written by train (best.pt).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a video.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--video-timeout", type=click.FloatRange(min=0), default=VIDEO_TIMEOUT_S, show_default=True, metavar="SECONDS",
              help="Give up on a video still reading or computing after this long (0: no limit).")
@click.argument("videos", nargs=-1, required=True)
def predict(checkpoint, as_json, device, video_timeout, videos):
    """Fake probability of new video files, prepared as the training store was; a video with
    several faces scores as its most fake-looking face (the DFDC convention)."""
    from pipeline.predict import predict as run_prediction

    for prediction in run_prediction(checkpoint, list(videos), device, video_timeout or None):
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(prediction), sort_keys=True))
        elif prediction.p_fake is None:
            click.echo(f"{'-':>6}  {prediction.status:<5}  {printable(prediction.video)}  ({printable(prediction.error)})")
        else:
            verdict = "" if prediction.fake is None else ("fake" if prediction.fake else "real")
            tracks = "" if len(prediction.faces) < 2 else "  (max of faces " + " ".join(f"{p:.4f}" for p in prediction.faces) + ")"
            click.echo(f"{prediction.p_fake:6.4f}  {verdict:<5}  {printable(prediction.video)}{tracks}")


@cli.command()
@click.option("--store", required=True, help="Feature store to export.")
@click.option("--format", "export_format", required=True, type=click.Choice(["deepfakebench"]))
@click.option("--out", required=True, help="deepfakebench: the folder DeepfakeBench runs from (its checkout); writes datasets/rgb/NAME/, "
              "datasets/lmdb/NAME_lmdb and preprocessing/dataset_json/NAME.json there.")
@click.option("--name", help="Dataset name in the JSON and its labels [default: the store's dataset].")
def export(store, export_format, out, name):
    """Write the store's crops and landmarks for another framework to train on."""
    from pipeline.export import export_deepfakebench

    summary = export_deepfakebench(store, out, name)
    click.echo(f"{summary.videos} videos, {summary.frames} frames -> {printable(summary.index_path)}, {printable(summary.lmdb_path)}")
    click.echo("DeepfakeBench config (train_config.yaml, test_config.yaml):")
    for line in summary.config_lines():
        click.echo(f"  {line}")


@cli.group()
def store():
    """Manage a feature store itself."""


@store.command()
@click.option("--store", "url", required=True, help="Feature store path or URL.")
def upgrade(url):
    """Rewrite a store of an older format in place, in the current one (docs/STORE.md)."""
    from feature_store.upgrade import upgrade as run_upgrade

    summary = run_upgrade(url)
    click.echo(f"{summary.videos} videos, {summary.upgraded} rewritten in the current format"
               + (f", {summary.dropped} incomplete groups removed" if summary.dropped else ""))


@cli.command()
@click.argument("names", nargs=-1)
def models(names):
    """The registered detectors (or the NAMES given): profile, input, recipe, and per field
    whether the value is the paper's or chosen, and from where."""
    from trainer.registry import describe, get_variant

    variants = [get_variant(name) for name in names] if names else None
    click.echo(describe(variants))


def metrics_text(metrics: dict) -> str:
    """The metrics of one split as a small table."""
    columns = ("n", "accuracy", "auc", "f1", "precision", "recall", "threshold")
    lines = [f"{metrics['model']} on {metrics['split']} (epoch {metrics['epoch']}, thresholds from {metrics['thresholds_from']})",
             f"{'':<7}" + "".join(f"{c:>10}" for c in columns)]
    for level in ("frame", "clip", "video"):
        if level in metrics:
            values = metrics[level]
            lines.append(f"{level:<7}" + "".join(f"{'-' if values[c] is None else format(values[c], 'g' if c == 'n' else '.4f'):>10}" for c in columns))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes print one line and exit 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="dfprep", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dfprep: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"dfprep: error: {printable(exc.format_message())}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        click.echo(f"dfprep: error: {printable(exc)}", err=True)
        sys.exit(2)
    except (StoreLocked, StoreError, Diverged) as exc:
        click.echo(f"dfprep: {printable(exc)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
