"""What produced a study, as the reports say it: the code version, the library versions and
the driver's CPU from study.json (core.columns.PROVENANCE, written by the study runner), and
the devices the trials ran on and what their `auto` settings resolved to (the results'
RUNTIME_KEYS columns).

Numbers made by different code or a different stack need not compare: the overview states the
provenance of its study (`provenance_facts`), and a comparison says where its experiments
differ in it (`provenance_notes`). A study recorded before provenance was, such as those
under findings/, says "not recorded" instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from core import columns as C

NOT_RECORDED = "not recorded"
SHORT_COMMIT = 7  # characters of a commit shown, as git's short hash
# How the report names the libraries of core.columns.PROV_LIBRARIES.
LIBRARY_NAMES = {
    "python": "Python",
    "torch": "torch",
    "ray": "Ray",
    "optuna": "Optuna",
    "cuda": "CUDA",
}


def provenance_of(meta: dict[str, Any]) -> dict[str, Any] | None:
    """study.json's provenance record, None when the study has none (recorded before it)."""
    record = meta.get(C.PROVENANCE)
    return record if isinstance(record, dict) else None


def code_text(record: dict[str, Any] | None) -> str:
    """'commit 1a2b3c4', 'commit 1a2b3c4 with uncommitted changes', 'package version 0.1.0'
    (code installed outside a git checkout), or 'not recorded'."""
    if record is None:
        return NOT_RECORDED
    commit = record.get(C.PROV_COMMIT)
    if commit:
        dirty = " with uncommitted changes" if record.get(C.PROV_DIRTY) else ""
        return f"commit {str(commit)[:SHORT_COMMIT]}{dirty}"
    version = record.get(C.PROV_PACKAGE_VERSION)
    return f"package version {version}" if version else "unknown (no git checkout, not installed)"


def library_versions(record: dict[str, Any] | None) -> dict[str, str]:
    """Library name (LIBRARY_NAMES) -> version as text ('none': not there, e.g. CUDA on a
    CPU-only machine); {} without a record."""
    if record is None:
        return {}
    versions = record.get(C.PROV_VERSIONS)
    versions = versions if isinstance(versions, dict) else {}
    return {
        LIBRARY_NAMES[key]: "none" if versions.get(key) is None else str(versions[key])
        for key in C.PROV_LIBRARIES
    }


def _counts(values: pd.Series) -> str:
    """'A (3 trials), B (1 trial)': each distinct value, most trials first."""
    counts = values.value_counts(sort=True)
    return ", ".join(f"{v} ({n} trial{'s' if n != 1 else ''})" for v, n in counts.items())


def _switch(value: Any) -> str:
    return "on" if bool(value) else "off"


def runtime_of(row: pd.Series) -> str:
    """One trial's resolved runtime: 'cuda bf16, channels_last on, compile on'."""
    return (
        f"{row[C.RESOLVED_DEVICE]} {row[C.RESOLVED_PRECISION]}, "
        f"channels_last {_switch(row[C.RESOLVED_CHANNELS_LAST])}, "
        f"compile {_switch(row[C.RESOLVED_COMPILE])}"
    )


def trial_devices(results: pd.DataFrame) -> tuple[str, str]:
    """(the trials' devices, their resolved runtimes), each as its distinct values with their
    trial counts; trials that reported none (errored before their first epoch, or run by code
    from before they were reported) count as 'not recorded'."""
    if not set(C.RUNTIME_KEYS) <= set(results.columns) or results.empty:
        return NOT_RECORDED, NOT_RECORDED
    recorded = results[list(C.RUNTIME_KEYS)].notna().all(axis=1)
    devices = results[C.DEVICE_NAME].where(recorded, NOT_RECORDED).astype(str)
    runtimes = pd.Series(NOT_RECORDED, index=results.index, dtype=object)
    if recorded.any():
        runtimes[recorded] = results[recorded].apply(runtime_of, axis=1)
    return _counts(devices), _counts(runtimes)


def provenance_facts(meta: dict[str, Any], results: pd.DataFrame) -> dict[str, str]:
    """The overview's facts about what produced the study: code version, library versions,
    the driver's CPU, the trials' devices and resolved runtime."""
    record = provenance_of(meta)
    libraries = library_versions(record)
    devices, runtimes = trial_devices(results)
    cpu = record.get(C.PROV_CPU) if record is not None else None
    earlier = meta.get(C.PROVENANCE_EARLIER) or []
    code = code_text(record)
    before = [code_text(r) for r in earlier if isinstance(r, dict)]
    if any(b != code for b in before):  # resumed by other code: say what made earlier trials
        code += f" (resumed; earlier runs: {', '.join(dict.fromkeys(before))})"
    return {
        "code version": code,
        "library versions": (
            ", ".join(f"{name} {v}" for name, v in libraries.items()) or NOT_RECORDED
        ),
        "driver CPU": str(cpu) if cpu else NOT_RECORDED,
        "trial devices": devices,
        "resolved runtime (precision, channels_last, compile)": runtimes,
    }


def provenance_notes(metas: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[str]:
    """A comparison's notes on provenance: experiments made with different code (another
    commit or package version, or uncommitted changes on one side), each library whose
    versions differ (naming them), and the experiments that recorded no provenance."""
    records = {lab: provenance_of(m) for m, lab in zip(metas, labels, strict=True)}
    known = {lab: r for lab, r in records.items() if r is not None}
    notes = []
    codes = {lab: code_text(r) for lab, r in known.items()}
    if len(set(codes.values())) > 1:
        each = "; ".join(f"{lab}: {code}" for lab, code in codes.items())
        notes.append(f"the experiments were made with different code versions ({each})")
    elif len(known) > 1 and any(r.get(C.PROV_DIRTY) for r in known.values()):
        dirty = ", ".join(lab for lab, r in known.items() if r.get(C.PROV_DIRTY))
        notes.append(
            f"made with uncommitted changes: {dirty} (one commit, but the code may differ)"
        )
    versions = {lab: library_versions(r) for lab, r in known.items()}
    for name in LIBRARY_NAMES.values():
        of = {lab: v[name] for lab, v in versions.items()}
        if len(set(of.values())) > 1:
            each = "; ".join(f"{lab}: {v}" for lab, v in of.items())
            notes.append(f"the experiments used different {name} versions ({each})")
    missing = [lab for lab, r in records.items() if r is None]
    if missing:
        notes.append(
            f"provenance not recorded for {', '.join(missing)} (studies from before it was): "
            "their code and library versions cannot be compared"
        )
    return notes
