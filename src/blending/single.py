"""The recipe of one experiment alone (`predict.py --only NAME`, `package.py --only NAME`): its folds averaged, with
decision rules tuned on its own OOF rows, as `ensemble.py NAME` would choose them, without touching the ensemble's
files under submissions/. For a fast model that must predict within a notebook's time limit, e.g. a distilled
student (training/distil.py)."""
from blending.blender import decide
from blending.experiments import load_experiment
from blending.recipe import make_recipe
from competition.decision import output_kind
from competition.metrics import probabilities, score_probabilities
from core.errors import UserError


def single_recipe(comp, models_dir, name):
    """The recipe predicting with experiment `name` alone; prints its OOF score and the decision rules."""
    exp, why = load_experiment(models_dir, name, comp)
    if exp is None:
        raise UserError(f"--only {name}: {why}")
    metric = exp["metrics"]["metric"]
    prob = probabilities(comp.task, exp["oof"])
    decisions = decide(comp.task, comp.y, exp["folds"], prob, metric)
    kind = output_kind(metric, comp.settings["submit_as"], comp.task)
    recipe = make_recipe(comp, [name], "single", {"weights": [1.0]}, "prob", metric, kind, decisions["rules"])
    score = score_probabilities(comp.task, comp.y, prob)[metric]
    print(f"--only {name}: OOF {metric} {score:.4f}, {kind} by {decisions['rules'].describe()}")
    return recipe
