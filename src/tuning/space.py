"""The search space: trial suggestions and a one-line description (parsed and checked by core.search_space)."""


def describe_space(space):
    parts = []
    for key, spec in space.items():
        if spec[0] == "categorical":
            parts.append(f"{key} in {spec[1]}")
        else:
            parts.append(f"{key} {spec[1]:g}..{spec[2]:g}{' (log)' if spec[3] else ''}")
    return ", ".join(parts)


def suggest(trial, space):
    params = {}
    for key, spec in space.items():
        if spec[0] == "categorical":
            params[key] = trial.suggest_categorical(key, spec[1])
        elif spec[0] == "int":
            params[key] = trial.suggest_int(key, spec[1], spec[2], step=spec[4], log=spec[3])
        else:
            params[key] = trial.suggest_float(key, spec[1], spec[2], step=spec[4], log=spec[3])
    return params
