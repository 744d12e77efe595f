"""`hwnas devices` and `hwnas profile`: list devices, build lookup tables (here or on a Ray node)."""

from __future__ import annotations

import argparse

from hwnas._cli_choices import SEED, Float, Int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "devices", help="list the devices this machine can profile, with their fingerprints",
        description="List the devices (backend, threads, batch, dtype) available here and their fingerprint "
                    "hashes. Device names are the tokens used in objectives, e.g. latency_ms@cpu.",
    )
    p.add_argument("--json", action="store_true", help="print full fingerprints as JSON")
    p.set_defaults(func=_devices)

    p = sub.add_parser(
        "profile", help="time every distinct block of a space on a device (lookup table) + whole subnets",
        description="Build a latency lookup table: every distinct block configuration of the space is run as a "
                    "real kernel on the device, plus N random whole subnets for the correction model. Resumable: "
                    "run the same command again after an interruption. The table carries the device fingerprint.",
        epilog="devices: cpu, cpu-t2 (2 threads), ort-cpu (onnxruntime), cuda, triton; suffix -b<N> for batch N.\n"
               "example: hwnas profile --space fmnist-mbv3 --device cpu --out results/runs/profiles/fmnist-cpu\n"
               "remote:  hwnas profile --space fmnist-mbv3 --device cpu --out DIR "
               "--ray-address 127.0.0.1:6379 --on-resource jetson-orin",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--space", required=True, help="preset name (fmnist-mbv3, fmnist-mixed, ofa-mbv3) or YAML path")
    p.add_argument("--device", default="cpu", help="device name (default: cpu)")
    p.add_argument("--out", required=True, help="profile directory (created; resumed when it exists)")
    p.add_argument("--networks", type=Int(0, 100_000), default=50, help="whole random subnets to time (default 50)")
    p.add_argument("--repeats", type=Int(1, 100_000), default=None, help="timing samples per kernel (default 21)")
    p.add_argument("--statistic", choices=["min", "median"], default=None,
                   help="sample statistic the predictor uses (default min: robust on shared machines)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the random subnets (default 0)")
    p.add_argument("--allow-stale", action="store_true",
                   help="accept an existing profile measured under another device fingerprint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-predictor", action="store_true", help="do not fit/save latency_predictor.json")
    p.add_argument("--ray-address", default=None, help="run the job as a Ray task on this cluster")
    p.add_argument("--on-resource", default=None, help="custom Ray resource of the node that owns the device")
    p.add_argument("--wait-node", type=Float(0, 86_400), default=30.0,
                   help="seconds to wait for a node with --on-resource to join (default 30)")
    p.set_defaults(func=_profile)


def _devices(args: argparse.Namespace) -> int:
    import json

    from hwnas.estimators.devices import available_devices

    devs = available_devices()
    if args.json:
        print(json.dumps([{**d.to_dict(), "fingerprint": d.fingerprint(), "hash": d.fingerprint_hash()} for d in devs],
                         indent=2))
        return 0
    print(f"{'name':<10} {'backend':<12} {'threads':>7} {'batch':>5} {'dtype':<8} fingerprint  hardware")
    for d in devs:
        fp = d.fingerprint()
        hw = fp.get("gpu") or fp.get("cpu")
        print(f"{d.name:<10} {d.backend:<12} {d.threads:>7} {d.batch_size:>5} {d.dtype:<8} {d.fingerprint_hash()} {hw}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from hwnas.errors import ConfigError
    from hwnas.estimators.devices import Device
    from hwnas.estimators.latency import LatencyPredictor
    from hwnas.estimators.profile import MeasureSettings, profile, profile_on_ray
    from hwnas.search_space import Space

    try:
        device = Device.from_name(args.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if (args.ray_address is None) != (args.on_resource is None):
        raise ConfigError("--ray-address and --on-resource go together")
    kw = {}
    if args.repeats is not None:
        kw.update(repeats=args.repeats, net_repeats=args.repeats)
    if args.statistic:
        kw["statistic"] = args.statistic
    try:
        settings = MeasureSettings(**kw) if kw else None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    space = Space.preset(args.space)
    if args.ray_address:
        prof = profile_on_ray(space, device, args.out, ray_address=args.ray_address, resource=args.on_resource,
                              n_networks=args.networks, allow_stale=args.allow_stale, seed=args.seed, settings=settings,
                              wait_for_node_s=args.wait_node)
    else:
        prof = profile(space, device, args.out, n_networks=args.networks, progress=not args.no_progress,
                       allow_stale=args.allow_stale, seed=args.seed, settings=settings)
    print(f"profile {prof.dir}: {len(prof.table)} blocks, {len(prof.networks)} networks, "
          f"fingerprint {prof.fingerprint_hash} ({prof.fingerprint.get('gpu') or prof.fingerprint.get('cpu')}), "
          f"{prof.measured_now} measured now in {prof.seconds:.0f} s")
    if not args.no_predictor and len(prof.networks):
        pred = LatencyPredictor.from_profile(prof)
        path = pred.save(prof.dir / "latency_predictor.json")
        rep = pred.fit_report
        print(f"latency predictor {path}: affine={tuple(round(v, 4) for v in pred.affine)}, "
              f"train within 10%: {rep.get('train_within_10pct', float('nan')):.2f}")
    return 0
