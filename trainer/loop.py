"""`train`: the thin training loop. The variant's recipe by default, class weights where it
asks for them, model selection on val only, a checkpoint every epoch, resumable and seeded."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from feature_store import FeatureStore
from stages.errors import ConfigError, Diverged
from trainer import checkpoint
from trainer.augment import ClipAugment
from trainer.dataset import ClipSpec, StoreClipDataset, open_split
from trainer.detector import Detector
from trainer.evaluate import autocast, evaluate_state, loader, pick_device, score, to_inputs
from trainer.losses import LOSSES
from trainer.metrics import auc_or_nan
from trainer.registry import Recipe, Variant, get_variant
from viz.curves import training_curves_png

LAST, BEST = "last.pt", "best.pt"


@dataclass(frozen=True)
class TrainRequest:
    store: str
    model: str
    out: str
    recipe: dict = field(default_factory=dict)  # Recipe fields to override
    inputs: tuple[str, ...] = ()  # ClipSpec overrides, "field=value"
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    amp: bool = False
    compile: bool = False
    pretrained: str | None = None
    resume: bool = False
    progress: bool = True


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    history: list[dict]
    val_metrics: dict
    out: Path


def train(request: TrainRequest) -> TrainResult:
    out = Path(request.out)
    variant = get_variant(request.model)
    resumed = _resume_state(request, out)
    spec, recipe, seed = _settings(request, variant, resumed)
    _seed_everything(seed)
    device = pick_device(request.device)
    augment = ClipAugment() if variant.augment else None
    train_set = open_split(request.store, spec, "train", transform=augment)
    val_set = open_split(request.store, spec, "val")
    if recipe.iterations:
        batches = len(loader(train_set, recipe.batch_size, 0, torch.Generator()))
        recipe = dataclasses.replace(recipe, epochs=math.ceil(recipe.iterations / batches))
    detector = Detector(variant, spec).to(device)
    if request.pretrained and not resumed:
        _load_pretrained(detector, variant, request.pretrained)
    trainable = _trainable(detector, variant, bool(request.pretrained or (resumed or {}).get("pretrained")))
    optimizer = make_optimizer(recipe, trainable)
    class_weights = _class_weights(train_set, recipe.class_weights).to(device)
    loss = LOSSES[recipe.loss][0]
    scaler = torch.amp.GradScaler(device.type, enabled=request.amp and device.type == "cuda")
    run = torch.compile(detector) if request.compile else detector
    state = resumed or {
        "model": variant.name, "spec": spec.to_dict(), "recipe": recipe.to_dict(), "seed": seed,
        "store": request.store, "profile": _store_profile(request.store, train_set.samples[0][0]), "pretrained": request.pretrained,
        "class_weights": class_weights.tolist(), "epoch": 0, "history": [], "best": None, "thresholds": None,
    }
    if resumed:
        detector.load_state_dict(resumed["weights"])
        optimizer.load_state_dict(resumed["optimizer"])
        _set_rng(resumed["rng"])
    if state["profile"]["name"] != variant.profile:
        tqdm.write(f"note: {variant.name} is made for stores of profile {variant.profile}; {request.store} has {state['profile']['name']}")
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(state["epoch"] + 1, recipe.epochs + 1):
        started = time.perf_counter()
        epoch_seed = seed * 1_000_003 + epoch
        batches = loader(train_set, recipe.batch_size, request.workers, torch.Generator().manual_seed(epoch_seed))
        bar = tqdm(batches, desc=f"{variant.name} epoch {epoch}/{recipe.epochs}", unit="batch", disable=not request.progress,
                   dynamic_ncols=True, leave=False)
        train_loss = _train_epoch(run, bar, loss, class_weights, optimizer, scaler, device, request.amp)
        if recipe.bn_batches:
            # The epoch's own batches, in its order, now under its final weights.
            again = loader(train_set, recipe.batch_size, request.workers, torch.Generator().manual_seed(epoch_seed))
            recompute_batch_norm(run, itertools.islice(again, recipe.bn_batches), device, request.amp)
        val_scores, val_loss = score(run, val_set, recipe.batch_size, device, request.workers, loss, class_weights, request.amp)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_auc": auc_or_nan(val_scores),
               "seconds": round(time.perf_counter() - started, 2)}
        state["history"] = state["history"] + [row]
        if request.progress:
            tqdm.write(f"{variant.name} epoch {epoch}/{recipe.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                       f"val AUC {row['val_auc']:.3f} ({row['seconds']:.0f}s)")
        improved = _better(row, state["best"])
        if improved:
            state["best"] = {"epoch": epoch, "val_auc": row["val_auc"], "val_loss": val_loss}
        state.update(epoch=epoch, weights=detector.state_dict(), optimizer=optimizer.state_dict(), rng=_rng())
        if improved:
            # The best checkpoint is for scoring: no optimiser state, a third of the size.
            checkpoint.save(out / BEST, {key: value for key, value in state.items() if key not in ("optimizer", "rng")})
        checkpoint.save(out / LAST, state)
    training_curves_png(state["history"], f"{variant.name} training", out / "curves.png")
    best = checkpoint.load(out / BEST)
    metrics = evaluate_state(best, str(out / BEST), request.store, "val", out / "val", device, request.workers)
    # Kept in the checkpoint for `predict`, which has no val split at hand.
    best["thresholds"] = {"unit": metrics[variant.level]["threshold"], "video": metrics["video"]["threshold"]}
    checkpoint.save(out / BEST, best)
    return TrainResult(best["best"]["epoch"], state["history"], metrics, out)


def _train_epoch(run, batches, loss, class_weights, optimizer, scaler, device, amp: bool) -> float:
    run.train()
    total, seen = 0.0, 0
    for batch in batches:
        frames, flow = to_inputs(batch, device)
        labels = batch["label"].repeat_interleave(run.units_per_sample(batch["frames"])).to(device)
        with autocast(device, amp):
            value = loss(run(frames, flow), labels, class_weights)
        if not torch.isfinite(value):
            raise Diverged(f"the training loss became {float(value.detach())}; a lower --lr may help")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(value).backward()
        scaler.step(optimizer)
        scaler.update()
        total += float(value.detach()) * len(batch["label"])
        seen += len(batch["label"])
        batches.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
    return total / seen


def recompute_batch_norm(run: torch.nn.Module, batches, device: torch.device, amp: bool) -> None:
    """Set every batch norm's statistics to their average over `batches` in training mode
    under the current weights ("precise BN", Wu and Johnson, Rethinking "Batch" in BatchNorm,
    2021). The running averages trail weights that move fast, as a network trained from
    scratch on a small set does; val loss and thresholds then judge statistics the weights
    have left, and the epoch kept is the one whose averages happened to fit (the demo's
    flowcnn). torch.optim.swa_utils.update_bn does this for one-input models only."""
    run.train()
    # Frozen layers are in eval mode (Detector.train) and keep the published statistics.
    norms = [module for module in run.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    with torch.no_grad(), autocast(device, amp):
        for batch in batches:
            run(*to_inputs(batch, device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def _better(row: dict, best: dict | None) -> bool:
    """Higher val AUC, then lower val loss; an undefined AUC counts as chance."""
    if best is None:
        return True
    auc = 0.5 if math.isnan(row["val_auc"]) else row["val_auc"]
    best_auc = 0.5 if math.isnan(best["val_auc"]) else best["val_auc"]
    return (auc, -row["val_loss"]) > (best_auc, -best["val_loss"])


def _resume_state(request: TrainRequest, out: Path) -> dict | None:
    if not request.resume:
        if (out / LAST).exists():
            raise ConfigError(f"--out {out}: holds a run already; add --resume to continue it or choose another folder")
        return None
    if not (out / LAST).exists():
        raise ConfigError(f"--resume: no {LAST} in {out} to resume from")
    state = checkpoint.load(out / LAST)
    if state["model"] != request.model:
        raise ConfigError(f"--resume: {out} trains {state['model']}, not {request.model}")
    return state


def _settings(request: TrainRequest, variant: Variant, resumed: dict | None) -> tuple[ClipSpec, Recipe, int]:
    """Input spec, recipe and seed: the variant's with the request's overrides, or the resumed
    run's, where only the number of epochs may change."""
    fields = dict(item.partition("=")[::2] for item in request.inputs)
    if resumed:
        spec, recipe = ClipSpec.from_dict(resumed["spec"]), Recipe.from_dict(resumed["recipe"])
        given = {name: value for name, value in request.recipe.items() if name != "epochs"}
        if any(getattr(recipe, name) != value for name, value in given.items()) or spec.with_text_overrides("input", fields) != spec:
            raise ConfigError("--resume: the run was started with other settings; only --epochs may change")
        if "epochs" in request.recipe:
            recipe = dataclasses.replace(recipe, epochs=request.recipe["epochs"], iterations=0)
        return spec, recipe, resumed["seed"]
    spec = variant.spec.with_text_overrides("input", fields)
    overrides = dict(request.recipe)
    if "epochs" in overrides:
        overrides.setdefault("iterations", 0)  # a number of epochs given replaces one of iterations
    try:
        recipe = dataclasses.replace(variant.recipe, **overrides)
    except TypeError as exc:
        raise ConfigError(f"recipe: {exc}") from exc
    if LOSSES[recipe.loss][1] != variant.head:
        allowed = ", ".join(name for name, (_, head) in LOSSES.items() if head == variant.head)
        raise ConfigError(f"--loss {recipe.loss}: {variant.name} has a {variant.head} output; allowed: {allowed}")
    return spec, recipe, request.seed


def _seed_everything(seed: int) -> None:
    # cuBLAS needs this set before its first call to be deterministic.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def _rng() -> dict:
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}


def _set_rng(states: dict) -> None:
    torch.set_rng_state(states["cpu"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])


def _store_profile(store_url: str, key: str) -> dict:
    """The profile a training video was made with, so that `predict` prepares new videos alike."""
    return FeatureStore(store_url, mode="r").entry(key).config


def _class_weights(train_set: StoreClipDataset, balanced: bool) -> torch.Tensor:
    """n / (2 n_class) for each class, so both classes weigh alike; ones when turned off."""
    counts = torch.bincount(torch.from_numpy(train_set.labels), minlength=2).float()
    if not balanced or (counts == 0).any():
        return torch.ones(2)
    return counts.sum() / (2 * counts)


def _load_pretrained(detector: Detector, variant: Variant, path: str) -> None:
    """A dfprep checkpoint loads whole. A plain state dict (torchvision, timm, the public
    Kinetics 3D ResNets; `state_dict` inside and DataParallel's `module.` prefix accepted)
    loads into the variant's pretrained module, where every tensor must find its match by name
    and shape, except a published head of another shape (`pretrained_head`, left out) and
    the variant's own new tensors (`pretrained_new`, left as initialised)."""
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ConfigError(f"--pretrained {path}: cannot read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(weights, dict):
        raise ConfigError(f"--pretrained {path}: not a state dict or dfprep checkpoint ({type(weights).__name__})")
    if weights.get("format") == checkpoint.FORMAT:
        target, weights, module = detector, weights["weights"], "network"
    else:
        weights = weights.get("state_dict", weights)
        weights = {key.removeprefix("module."): value for key, value in weights.items()}
        target = detector.net.get_submodule(variant.pretrained_module) if variant.pretrained_module else detector.net
        module = variant.pretrained_module or "network"
    own = target.state_dict()
    new = {key for key in own if any(fragment in f".{key}" for fragment in variant.pretrained_new)}
    missing = [key for key in own if key not in weights and key not in new]
    shaped = [key for key in own if key in weights and weights[key].shape != own[key].shape]
    wrong = [key for key in shaped if not key.startswith(variant.pretrained_head)]
    if missing or wrong:
        what = [f"{key} {tuple(weights[key].shape)} where {variant.name} has {tuple(own[key].shape)}" for key in wrong[:2]]
        what += [f"{key} missing" for key in missing[:2]]
        raise ConfigError(f"--pretrained {path}: {len(missing)} of {len(own)} tensors of {variant.name}'s {module} missing, "
                          f"{len(wrong)} of another shape: {'; '.join(what)}")
    usable = {key: weights[key] for key in own if key in weights and key not in shaped}
    target.load_state_dict(usable, strict=False)
    left_out = f"; left out: {', '.join(shaped)} (another head)" if shaped else ""
    fresh = f"; {len(new)} of {variant.name}'s own (not in the published network) start as initialised" if new else ""
    tqdm.write(f"pretrained: {len(usable)} of {len(own)} tensors loaded from {path}{left_out}{fresh}")


def _trainable(detector: Detector, variant: Variant, pretrained: bool) -> list[torch.nn.Parameter]:
    """Every parameter, or with pretrained weights only the variant's fine-tuned top layers."""
    if not (pretrained and variant.finetune):
        return list(detector.parameters())
    chosen = []
    for name, parameter in detector.net.named_parameters():
        parameter.requires_grad_(name.startswith(variant.finetune))
        if parameter.requires_grad:
            chosen.append(parameter)
    return chosen


def make_optimizer(recipe: Recipe, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
