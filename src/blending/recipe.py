"""The ensemble's recipe (submissions/ensemble.json, "recipe"): what src/predict.py and bundles need to repeat a blend
on new rows, as plain values, and applying it."""
from pathlib import Path

from blending.blend_search import Stacker, blend
from blending.experiments import fold_mean_probabilities
from competition.decision import Rules
from core.artifacts import read_json
from core.errors import UserError

RECIPE_VERSION = 1


def make_recipe(comp, names, method, best, average, metric, kind, rules):
    """What src/predict.py needs to repeat this blend on new rows, as plain values: the experiments in order, how
    their folds are averaged, the weights or the stacking meta-model, the decision rules and the output kind."""
    return {"version": RECIPE_VERSION, "task": comp.task, "classes": [str(c) for c in comp.classes],
            "experiments": names, "method": method, "average": average, "metric": metric, "kind": kind,
            "weights": None if best["weights"] is None else [float(w) for w in best["weights"]],
            "stacker": best["stacker"].state() if "stacker" in best else None, "rules": rules.state()}


def read_recipe(path):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run python src/ensemble.py first (it writes the recipe predict.py follows)")
    recipe = read_json(path).get("recipe")
    if not recipe or recipe.get("version") != RECIPE_VERSION:
        raise UserError(f"{path} holds no recipe of version {RECIPE_VERSION} (written by another version of the "
                        f"project): rerun python src/ensemble.py")
    return recipe


def without_unused(recipe):
    """The recipe without the experiments its weights leave out (weight 0): nothing to load or run for them."""
    if recipe["weights"] is None:
        return recipe
    keep = [i for i, w in enumerate(recipe["weights"]) if w > 0]
    return {**recipe, "experiments": [recipe["experiments"][i] for i in keep],
            "weights": [recipe["weights"][i] for i in keep]}


def combine(recipe, test_probs, side=None):
    """The ensemble's test prediction from each experiment's fold-averaged prediction (and the side features, a frame
    of the data YAML's feature_columns, for a meta-model fitted with them), then its decision rules."""
    if recipe["weights"] is not None:
        prob = blend(test_probs, recipe["weights"])
    else:
        stacker = Stacker.from_state(recipe["stacker"])
        prob = stacker.predict(test_probs, side if stacker.features is not None else None)
    return prob, Rules.from_state(recipe["rules"])


def experiment_probabilities(recipe, fold_predictions):
    return [fold_mean_probabilities(recipe["task"], logits, recipe["average"]) for logits in fold_predictions]
