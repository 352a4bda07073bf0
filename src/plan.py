"""Which experiments `bash run.sh` trains on this machine, and which extra packages they need
(training/experiment_list.py).

    python src/plan.py configs/experiments.txt          config paths to train, one a line (notes go to stderr)
    python src/plan.py --requirements CONFIG [...]      extra requirement files those configs need

A line of the experiments list is `CONFIG` or `CONFIG gpu`; `gpu` lines run only where CUDA is present, and on a CPU
the plan says how to add one and roughly how long it would take.
"""
import argparse

from core.cli import run_cli
from training.experiment_list import plan, requirements


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="an experiments list, or configs with --requirements")
    parser.add_argument("--requirements", action="store_true", help="print the extra requirement files the configs need")
    args = parser.parse_args()
    if args.requirements:
        print("\n".join(requirements(args.paths)))
        return
    import torch
    print("\n".join(plan(args.paths[0], torch.cuda.is_available())))


if __name__ == "__main__":
    run_cli(main)
