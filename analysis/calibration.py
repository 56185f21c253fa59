"""Calibration models: wall = intercept + sum_i gain_i * software_i, fitted on windows.

The intercept is the draw the software meters cannot see (PSU losses, fans, idle
components), in W; each gain is dimensionless.  Fitted by OLS on window mean power (W)
pooled over sessions; cross-validated by leaving one workload (or session) out, so the
error quoted is that on a workload the model has not seen.  Prediction intervals are the
OLS ones: for a window, ``yhat +- t * s * sqrt(1 + x0' (X'X)^-1 x0)``; for a run's
energy, the windows' variances are summed (independent residuals assumed; said).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.regression import ols_design

FORMAT = "calibrate-model/1"


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

    def design(self, df: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.ones(len(df))] + [df[c].to_numpy(float) for c in self.components])

    def predict(self, df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
        """Per window: predicted reference power (W) with its prediction interval."""
        x = self.design(df)
        beta = np.array([self.intercept_w] + [self.gains[c] for c in self.components])
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
        Path(path).write_text(json.dumps(self.to_json(), indent=2, default=float) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CalibrationModel:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read model {path}: {exc}") from None
        if raw.get("format") != FORMAT:
            raise ValueError(f"{path} is not a calibrate model (format {raw.get('format')!r})")
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in keys})


def fit_calibration(table: pd.DataFrame, components: list[str], reference: str = "reference",
                    group: str | None = "workload", window_s: float = float("nan")) -> CalibrationModel:
    """Fit reference = a + sum b_i * component_i on a window table (columns in W).

    ``group`` names the column for leave-one-group-out cross-validation (workload, or
    session when there is one workload).
    """
    missing = [c for c in [reference, *components] if c not in table]
    if missing:
        raise ValueError(f"window table has no column {missing[0]!r}")
    df = table.dropna(subset=[reference, *components])
    x = np.column_stack([np.ones(len(df))] + [df[c].to_numpy(float) for c in components])
    y = df[reference].to_numpy(float)
    fit = ols_design(x, y)
    beta, cov, sd, dof = fit.beta, fit.cov, fit.residual_sd, fit.dof
    model = CalibrationModel(
        reference=str(table.attrs.get("reference", reference)), components=list(components),
        intercept_w=float(beta[0]), gains={c: float(b) for c, b in zip(components, beta[1:])},
        cov=cov.tolist(), residual_sd_w=sd, dof=dof, n_windows=len(df), window_s=window_s,
        sessions=sorted(map(str, df["session"].unique())) if "session" in df else [],
        workloads=sorted(map(str, df["workload"].unique())) if "workload" in df else [],
    )
    model.cross_validation = cross_validate(df, components, reference, group)
    return model


def refit_cpu_model(model: CalibrationModel, idle_w: float, max_w: float) -> tuple[float, float]:
    """(idle W, max W) of a utilisation model that reads what the reference reads.

    A one-component calibration of a ``cpu-model`` channel, ``reference = a + b x P`` with
    ``P = idle + (max - idle) x u``, is itself a linear utilisation model:
    ``idle' = a + b x idle`` and ``max' = a + b x max`` (W).
    """
    if len(model.components) != 1:
        raise ValueError("a cpu-model can be refitted only from a calibration on that one channel")
    b = model.gains[model.components[0]]
    return model.intercept_w + b * idle_w, model.intercept_w + b * max_w


def cross_validate(df: pd.DataFrame, components: list[str], reference: str, group: str | None) -> dict[str, Any]:
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
        x = np.column_stack([np.ones(len(train))] + [train[c].to_numpy(float) for c in components])
        try:
            beta = ols_design(x, train[reference].to_numpy(float)).beta
        except ValueError:
            continue
        xt = np.column_stack([np.ones(len(test))] + [test[c].to_numpy(float) for c in components])
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
