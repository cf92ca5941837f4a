"""Write a .nemo from a `training.device_train` network.pt: the init model's config and front end,
the trained encoder and decoder weights (needs NeMo).

    .venv/bin/python -m training.network_to_nemo --init models/qasr-en-quartznet5x5.nemo \\
        --network runs/gpu/network.pt --out runs/gpu/model.nemo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.torch_quartznet import network_state


def network_to_nemo(init: Path, network: Path, out: Path) -> Path:
    from nemo.collections.asr.models import EncDecCTCModel

    model = EncDecCTCModel.restore_from(str(init), map_location="cpu")
    trained = torch.load(network, map_location="cpu", weights_only=True)
    state = model.state_dict()
    unknown = set(trained) - set(network_state(state))
    if unknown:
        raise ValueError(f"{network}: entries the model does not have: {sorted(unknown)[:5]}")
    model.load_state_dict(state | trained, strict=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.eval().save_to(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", type=Path, required=True, help="the .nemo that device_train started from")
    parser.add_argument("--network", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(network_to_nemo(args.init, args.network, args.out))


if __name__ == "__main__":
    main()
