"""Within-task pre-training: masked-LM training of the config's backbone on the competition's text
(train + test, labels never used; plus itpt_extra_files). Writes models/itpt/<backbone>-<hash>/; a config with
`init: itpt` fine-tunes from it (train.py runs this step itself when the checkpoint does not exist yet).

    python src/itpt.py configs/minilm-l6.yaml [--set itpt_epochs=3 itpt_whole_word=true ...]
    torchrun --nproc_per_node 2 src/itpt.py configs/minilm-l6.yaml    # on 2 GPUs (DDP)
"""
import argparse

from core.cli import run_cli
from core.config import load_config
from core.distributed import setup as setup_distributed
from training.mlm import ensure_checkpoint


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML (see configs/); its backbone and itpt_* keys are used")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    args = parser.parse_args()
    setup_distributed()
    cfg = load_config(args.config, args.set)
    folder = ensure_checkpoint(cfg)
    sets = " ".join(["init=itpt"] + [s for s in args.set if not s.startswith("init=")])
    print(f"ITPT checkpoint: {folder}\nfine-tune from it: python src/train.py {args.config} --set {sets}")


if __name__ == "__main__":
    run_cli(main)
