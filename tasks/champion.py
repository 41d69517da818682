"""Stage `champion`: fetch the model the candidate is judged against from the registry.

The registry lives outside DVC's view, so this stage always runs (`always_changed` in
dvc.yaml). What it writes changes only when the reference changes, and only then does DVC
re-run `evaluate`. The reference is the champion when the candidate is first judged, and that
same version ever after (`Registry.reference_for`): so a re-run after a promotion finds nothing
to do, instead of comparing the new champion with itself.

Writes `models/champion/champion.json` (version and MD5) and, when there is a reference,
`models/champion/student.pt` (its kdflow checkpoint, checked against the MD5 in the registry).

"There is no champion" and "there is one, but it cannot be fetched intact" are different
answers: the first lets the regression gates pass, the second (artifacts unreachable or
deleted, no MD5 recorded, an MD5 that differs) is recorded as `unjudged`, and the gates that
compare with the champion then fail, so nothing is promoted on a comparison never made. A
registry that cannot be read at all fails the stage.
"""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.io import write_json
from kdflow.registry.client import Registry, RegistryError
from kdflow.registry.lineage import file_md5, fingerprint
from kdflow.text import redact, safe
from tasks import layout
from tasks._stage import candidate_lineage, console, main


def run(params: Params, root: Path) -> dict:
    registry = Registry(params.register_.model_name)
    reference, why = registry.reference_for(fingerprint(candidate_lineage(root)))
    # Only what identifies the reference goes into the file: the same reference must give the
    # same bytes, whatever the wording of why it was chosen, or DVC would re-run `evaluate`.
    info: dict = {"model_name": registry.name, "version": None, "student_md5": None}
    model = root / layout.CHAMPION_MODEL
    if reference is None:
        model.unlink(missing_ok=True)
    else:
        info["version"] = int(reference.version)
        try:
            registry.download_checkpoint(reference, model)
            info["student_md5"] = file_md5(model)
        except RegistryError as error:
            # Nothing trustworthy to score it with: evaluate records why, and the champion
            # gates fail closed on it.
            model.unlink(missing_ok=True)
            info["unjudged"] = redact(str(error))  # it reaches tags, reports and logs
    write_json(info, root / layout.CHAMPION_INFO)  # last: it names the checkpoint beside it
    if reference is None:
        console.print(f"champion: nothing to compare the candidate with ({safe(why)})")
    elif "unjudged" in info:
        console.print(
            f"champion: version {reference.version} cannot be judged against ({safe(info['unjudged'])}); "
            "the gates that compare with it will fail"
        )
    else:
        console.print(f"champion: judging the candidate against version {reference.version} ({safe(why)})")
    return info | {"reason": why}


if __name__ == "__main__":
    main("champion", run)
