"""Calibration models: wall = intercept + sum_i gain_i * software_i, fitted on windows.

The intercept is the draw the software meters cannot see (PSU losses, fans, idle
components), in W; each gain is dimensionless.  Fitted by OLS on window mean power (W)
pooled over sessions; cross-validated by leaving one workload (or session) out, so the
error quoted is that on a workload the model has not seen.  Prediction intervals are the
OLS ones: for a window, ``yhat +- t * s * sqrt(1 + x0' (X'X)^-1 x0)``; for a run's
energy, the windows' variances are summed (independent residuals assumed; said).

A candidate ``a+b`` is the sum of its components (``combine="sum"``: one gain on
``a + b``), as everywhere else; a gain per component (``combine="per-component"``) is
fitted only when asked, and then the components' collinearity is recorded.  Model files
are read through one schema (:class:`ModelFile`, pydantic): types, shapes, ranges,
finite numbers and a positive-semidefinite covariance, or a one-line ValueError naming
the file and the key.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy import stats

from analysis.regression import ols_design
from analysis.session_format import json_safe

FORMAT = "calibrate-model/1"
#: the shortest window (s) a model may ask for, and the most windows one correction may cut
MIN_WINDOW_S = 0.1
#: fewer windows than this per fitted parameter is warned about
MIN_WINDOWS_PER_PARAMETER = 10


@dataclass
class CalibrationModel:
    reference: str
    components: list[str]
    intercept_w: float
    gains: dict[str, float]
    cov: list[list[float]]  # covariance of (intercept, gains...) from OLS
    residual_sd_w: float
    dof: int
    n_windows: int
    window_s: float
    sessions: list[str] = field(default_factory=list)
    workloads: list[str] = field(default_factory=list)
    cross_validation: dict[str, Any] = field(default_factory=dict)
    combine: Literal["sum", "per-component"] = "per-component"
    #: what the model was fitted against: reference meter kind/name, hosts, channel kinds
    provenance: dict[str, Any] = field(default_factory=dict)
    #: per-component fits: correlation of the components and condition number of the design
    collinearity: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def terms(self) -> list[str]:
        """The regressors: the sum ``a+b`` as one, or each component."""
        return ["+".join(self.components)] if self.combine == "sum" else list(self.components)

    def design(self, df: pd.DataFrame) -> np.ndarray:
        return design_matrix(df, self.components, self.combine)

    def beta(self) -> np.ndarray:
        return np.array([self.intercept_w] + [self.gains[t] for t in self.terms])

    def predict(self, df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
        """Per window: predicted reference power (W) with its prediction interval."""
        x = self.design(df)
        beta = self.beta()
        yhat = x @ beta
        cov = np.asarray(self.cov)
        var_mean = np.einsum("ij,jk,ik->i", x, cov, x)
        se = np.sqrt(self.residual_sd_w**2 + var_mean)
        t = stats.t.ppf(1 - alpha / 2, self.dof) if self.dof > 0 else np.nan
        return pd.DataFrame({"predicted_w": yhat, "pi_low_w": yhat - t * se, "pi_high_w": yhat + t * se,
                             "se_w": se})

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self),
                "equation": f"{self.reference} = {self.intercept_w:.3f} W + "
                            + " + ".join(f"{g:.4f} x {c}" for c, g in self.gains.items())}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(json_safe(self.to_json()), indent=2, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CalibrationModel:
        """Read and validate a model file; ValueError (one line, naming the file and key)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read model {path}: {exc}") from None
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"{path} is not valid JSON ({str(exc).splitlines()[0][:120]})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path} is not a calibrate model (a JSON object is expected, not {type(raw).__name__})")
        if raw.get("format") != FORMAT:
            raise ValueError(f"{path} is not a calibrate model (format {str(raw.get('format'))[:60]!r}, "
                             f"expected {FORMAT!r})")
        try:
            m = ModelFile.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(x) for x in err["loc"]) or "(top level)"
            msg = str(err["msg"]).splitlines()[0]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            raise ValueError(f"{path}: {key}: {msg}"[:300]) from None
        return cls(**{k: getattr(m, k) for k in cls.__dataclass_fields__})


_FINITE = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ModelFile(BaseModel):
    """The schema of a ``calibrate-model/1`` file (what :meth:`CalibrationModel.load` accepts)."""

    model_config = _FINITE

    format: Literal["calibrate-model/1"]
    reference: str = Field(min_length=1, max_length=200)
    components: list[str] = Field(min_length=1, max_length=32)
    intercept_w: float = Field(ge=-1e7, le=1e7)
    gains: dict[str, float]
    cov: list[list[float]]
    residual_sd_w: float = Field(ge=0, le=1e7)
    dof: int = Field(gt=0, le=10**9)
    n_windows: int = Field(gt=0, le=10**9)
    window_s: float = Field(ge=MIN_WINDOW_S, le=7 * 86400.0)
    sessions: list[str] = Field(default_factory=list, max_length=100_000)
    workloads: list[str] = Field(default_factory=list, max_length=100_000)
    cross_validation: dict[str, Any] = Field(default_factory=dict)
    combine: Literal["sum", "per-component"] = "per-component"
    provenance: dict[str, Any] = Field(default_factory=dict)
    collinearity: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list, max_length=1000)
    equation: str | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _shapes(self) -> ModelFile:
        if any(not c for c in self.components) or len(set(self.components)) != len(self.components):
            raise ValueError("components must be distinct, non-empty channel ids")
        terms = ["+".join(self.components)] if self.combine == "sum" else list(self.components)
        if sorted(self.gains) != sorted(terms):
            raise ValueError(f"gains must have exactly the keys {terms} (combine {self.combine!r})")
        if any(abs(g) > 1e6 for g in self.gains.values()):
            raise ValueError("gains must lie within +-1e6")
        k = len(terms) + 1
        if len(self.cov) != k or any(len(row) != k for row in self.cov):
            raise ValueError(f"cov must be a {k} x {k} matrix (intercept and {len(terms)} gain(s))")
        c = np.asarray(self.cov, dtype=float)
        if not np.all(np.isfinite(c)) or np.max(np.abs(c)) > 1e30:
            raise ValueError("cov entries must be finite")
        if np.any(np.diag(c) < 0):
            raise ValueError("cov has a negative variance on its diagonal")
        scale = max(float(np.max(np.abs(c))), 1e-300)
        if np.max(np.abs(c - c.T)) > 1e-9 * scale:
            raise ValueError("cov must be symmetric")
        if float(np.min(np.linalg.eigvalsh(c))) < -1e-9 * scale:
            raise ValueError("cov is not positive semidefinite")
        if self.dof >= self.n_windows:
            raise ValueError("dof must be smaller than n_windows")
        return self


def design_matrix(df: pd.DataFrame, components: list[str], combine: str = "per-component") -> np.ndarray:
    """``[1, a+b]`` (combine ``sum``) or ``[1, a, b]`` per row of ``df`` (columns in W)."""
    cols = [df[c].to_numpy(float) for c in components]
    if combine == "sum":
        cols = [np.sum(cols, axis=0)]
    return np.column_stack([np.ones(len(df))] + cols)


def collinearity(df: pd.DataFrame, components: list[str]) -> dict[str, Any]:
    """How well the components' separate gains are identified: their pairwise correlations
    and the condition number of the standardised design (above ~30 the gains trade off)."""
    x = np.column_stack([df[c].to_numpy(float) for c in components])
    sd = x.std(axis=0)
    out: dict[str, Any] = {"correlation": {}, "condition_number": math.nan}
    for i in range(len(components)):
        for j in range(i + 1, len(components)):
            r = float(np.corrcoef(x[:, i], x[:, j])[0, 1]) if sd[i] > 0 and sd[j] > 0 else math.nan
            out["correlation"][f"{components[i]}~{components[j]}"] = r
    if np.all(sd > 0) and len(x) > 1:
        z = np.column_stack([np.ones(len(x)), (x - x.mean(axis=0)) / sd])
        out["condition_number"] = float(np.linalg.cond(z))
    return out


def fit_calibration(table: pd.DataFrame, components: list[str], reference: str = "reference",
                    group: str | None = "workload", window_s: float = float("nan"),
                    combine: Literal["sum", "per-component"] = "per-component",
                    provenance: dict[str, Any] | None = None) -> CalibrationModel:
    """Fit reference = a + sum b_i * component_i (``combine="per-component"``) or
    reference = a + b * (sum of the components) (``combine="sum"``, what a candidate
    ``a+b`` means) on a window table (columns in W).

    ``group`` names the column for leave-one-group-out cross-validation (workload, or
    session when there is one workload).  ``provenance``: what the fit was made against
    (stored, so that :func:`provenance_warnings` can compare a session with it).
    """
    if combine not in ("sum", "per-component"):
        raise ValueError(f"combine must be 'sum' or 'per-component', not {combine!r}")
    missing = [c for c in [reference, *components] if c not in table]
    if missing:
        raise ValueError(f"window table has no column {missing[0]!r}")
    df = table.dropna(subset=[reference, *components])
    x = design_matrix(df, components, combine)
    y = df[reference].to_numpy(float)
    fit = ols_design(x, y)
    beta, cov, sd, dof = fit.beta, fit.cov, fit.residual_sd, fit.dof
    terms = ["+".join(components)] if combine == "sum" else list(components)
    model = CalibrationModel(
        reference=str(table.attrs.get("reference", reference)), components=list(components),
        intercept_w=float(beta[0]), gains={c: float(b) for c, b in zip(terms, beta[1:])},
        cov=cov.tolist(), residual_sd_w=sd, dof=dof, n_windows=len(df), window_s=window_s,
        sessions=sorted(map(str, df["session"].unique())) if "session" in df else [],
        workloads=sorted(map(str, df["workload"].unique())) if "workload" in df else [],
        combine=combine, provenance=dict(provenance or {}),
    )
    n_par = len(terms) + 1
    if len(df) < MIN_WINDOWS_PER_PARAMETER * n_par:
        model.warnings.append(f"only {len(df)} windows for {n_par} parameters (fewer than "
                              f"{MIN_WINDOWS_PER_PARAMETER} per parameter): the fit is poorly determined")
    if combine == "per-component" and len(components) > 1:
        model.collinearity = collinearity(df, components)
        cn = model.collinearity["condition_number"]
        rs = [abs(r) for r in model.collinearity["correlation"].values() if math.isfinite(r)]
        if not math.isfinite(cn) or cn > 30 or (rs and max(rs) > 0.9):
            model.warnings.append(
                f"the components are collinear (max |r| {max(rs) if rs else float('nan'):.3f}, condition number "
                f"{cn:.3g}): their separate gains are not identified, only their prediction; fit the sum instead")
        if any(b < 0 for b in beta[1:]):
            model.warnings.append("a fitted gain is negative: a meter cannot read less for more load; "
                                  "the per-component split is not physical")
    model.cross_validation = cross_validate(df, components, reference, group, combine)
    return model


def refit_cpu_model(model: CalibrationModel, idle_w: float, max_w: float) -> tuple[float, float]:
    """(idle W, max W) of a utilisation model that reads what the reference reads.

    A one-component calibration of a ``cpu-model`` channel, ``reference = a + b x P`` with
    ``P = idle + (max - idle) x u``, is itself a linear utilisation model:
    ``idle' = a + b x idle`` and ``max' = a + b x max`` (W).
    """
    if len(model.components) != 1:
        raise ValueError("a cpu-model can be refitted only from a calibration on that one channel")
    b = model.gains[model.terms[0]]
    return model.intercept_w + b * idle_w, model.intercept_w + b * max_w


def cross_validate(df: pd.DataFrame, components: list[str], reference: str, group: str | None,
                   combine: str = "per-component") -> dict[str, Any]:
    """Leave-one-group-out errors (W and %) of the calibrated prediction vs the reference."""
    if group is None or group not in df or df[group].nunique() < 2:
        if "session" in df and df["session"].nunique() >= 2:
            group = "session"
        else:
            return {"method": "none (one group only)", "folds": []}
    folds = []
    errors: list[np.ndarray] = []
    refs: list[np.ndarray] = []
    for g, test in df.groupby(group):
        train = df[df[group] != g]
        x = design_matrix(train, components, combine)
        try:
            beta = ols_design(x, train[reference].to_numpy(float)).beta
        except ValueError:
            continue
        xt = design_matrix(test, components, combine)
        err = xt @ beta - test[reference].to_numpy(float)
        errors.append(err)
        refs.append(test[reference].to_numpy(float))
        folds.append({"held_out": str(g), "n": int(len(test)), "rmse_w": float(np.sqrt(np.mean(err**2))),
                      "bias_w": float(np.mean(err)),
                      "mape_pct": float(100 * np.mean(np.abs(err) / np.abs(test[reference].to_numpy(float))))})
    if not folds:
        return {"method": f"leave-one-{group}-out", "folds": []}
    e, r = np.concatenate(errors), np.concatenate(refs)
    return {"method": f"leave-one-{group}-out", "folds": folds, "rmse_w": float(np.sqrt(np.mean(e**2))),
            "mape_pct": float(100 * np.mean(np.abs(e) / np.abs(r)))}


def correct_energy(model: CalibrationModel, table: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """Calibrated energy (J) over the table's windows with a prediction interval.

    The interval sums per-window variances (residuals taken as independent) plus the
    shared parameter uncertainty of the windows' total.
    """
    pred = model.predict(table, alpha)
    widths = (table["t1_s"] - table["t0_s"]).to_numpy(float)
    energy = float(np.sum(pred["predicted_w"].to_numpy() * widths))
    x = model.design(table)
    xw = widths @ x  # total-energy design row
    var_param = float(xw @ np.asarray(model.cov) @ xw)
    var_resid = float(np.sum((model.residual_sd_w * widths) ** 2))
    se = float(np.sqrt(var_param + var_resid))
    t = float(stats.t.ppf(1 - alpha / 2, model.dof))
    out: dict[str, Any] = {"energy_j": energy, "pi_j": [energy - t * se, energy + t * se], "se_j": se,
                           "covered_s": float(widths.sum()), "n_windows": int(len(table)),
                           "uncorrected_j": {c: float(np.sum(table[c].to_numpy(float) * widths))
                                             for c in model.components}}
    if "reference" in table and table["reference"].notna().all():
        ref_e = float(np.sum(table["reference"].to_numpy(float) * widths))
        out["reference_j"] = ref_e
        out["error_pct"] = 100 * (energy - ref_e) / ref_e if ref_e else None
        out["reference_in_pi"] = bool(out["pi_j"][0] <= ref_e <= out["pi_j"][1])
    return out


def correct_span(model: CalibrationModel, duration_s: float, component_j: dict[str, float],
                 alpha: float = 0.05) -> dict[str, Any]:
    """Calibrated energy (J) over one span of ``duration_s`` (s) from the components'
    energies over it (J): ``a * T + sum_i g_i * E_i`` (or ``g * sum E_i``), the corrected
    power integrated over the span.  Its prediction interval: parameter uncertainty of
    that sum, ``x' C x`` with ``x = (T, E...)``, plus the residual variance of the
    ``T / window_s`` windows it spans, taken as independent (``sd^2 * window_s * T``).
    """
    e = [float(component_j[c]) for c in model.components]
    x = np.array([float(duration_s)] + ([sum(e)] if model.combine == "sum" else e))
    energy = float(x @ model.beta())
    var_param = max(float(x @ np.asarray(model.cov, float) @ x), 0.0)
    var_resid = model.residual_sd_w**2 * float(model.window_s) * float(duration_s)
    se = math.sqrt(var_param + var_resid)
    t = float(stats.t.ppf(1 - alpha / 2, model.dof))
    return {"energy_j": energy, "pi_j": [energy - t * se, energy + t * se], "se_j": se,
            "duration_s": float(duration_s), "uncorrected_j": dict(zip(model.components, e))}


def provenance_warnings(model: CalibrationModel, session: dict[str, Any]) -> list[str]:
    """Where a session differs from what the model was fitted against (same keys as
    ``model.provenance``: reference_kind, reference_name, hosts, channel_kinds,
    workloads); one sentence each.  Nothing is said about what the model did not record."""
    prov = model.provenance or {}
    out: list[str] = []
    if model.reference != session.get("reference") and session.get("reference") is not None:
        out.append(f"the model's reference channel is {model.reference!r}; this session's is "
                   f"{session.get('reference')!r}")
    for key, what in (("reference_kind", "reference meter kind"), ("reference_name", "reference meter")):
        a, b = prov.get(key), session.get(key)
        if a and b and a != b:
            out.append(f"{what} differs: the model was fitted against {a!r}, this session has {b!r}")
    hosts = prov.get("hosts") or []
    if hosts and session.get("host") and session["host"] not in hosts:
        out.append(f"host differs: the model was fitted on {', '.join(map(repr, hosts))}, this session ran on "
                   f"{session['host']!r}")
    kinds, now = prov.get("channel_kinds") or {}, session.get("channel_kinds") or {}
    for c in model.components:
        if kinds.get(c) and now.get(c) and kinds[c] != now[c]:
            out.append(f"channel {c} is a {now[c]!r} meter here but was a {kinds[c]!r} meter in the fit")
    wls = model.workloads or prov.get("workloads") or []
    if wls and session.get("workload") and session["workload"] not in wls:
        out.append(f"workload differs: the model was fitted on {', '.join(map(repr, wls))}, this session ran "
                   f"{session['workload']!r} (the calibration may not carry over)")
    return out
