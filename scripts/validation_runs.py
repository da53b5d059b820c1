"""What the validation scripts share besides deadtree.evaluation.frame_validation.segment_mask: results added under a
label to a JSON file that keeps earlier runs."""
from __future__ import annotations

import json
from pathlib import Path


def add_result(out: Path, what: str, label: str, record: dict) -> None:
    """Write `record` under `label` into `out`'s results, keeping the others (`what` describes a new file)."""
    results = json.loads(out.read_text()) if out.is_file() else {"what": what, "results": {}}
    results["results"][label] = record
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
