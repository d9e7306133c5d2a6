"""The prompt lab: YAML case suites run through the real agent, prompt variants compared side by side,
and a regression gate on must-hold expectations (see README.md in this folder)."""

from evals.prompt_lab.cases import Case, CaseFormatError, Expect, PickConstraints, load_cases
from evals.prompt_lab.checks import Check, Observation, check_case
from evals.prompt_lab.generate import generate_cases, holdout_recommender
from evals.prompt_lab.runner import CaseRun, Lab, LabError, VariantRun
from evals.prompt_lab.variants import Variant, parse_variant

__all__ = ["Case", "CaseFormatError", "CaseRun", "Check", "Expect", "Lab", "LabError", "Observation",
           "PickConstraints", "Variant", "VariantRun", "check_case", "generate_cases", "holdout_recommender",
           "load_cases", "parse_variant"]
