"""The prompt lab: YAML case suites run through the real agent, prompt variants compared side by side,
and a regression gate on must-hold expectations (see README.md in this folder)."""

from promptlab.cases import Case, CaseFormatError, Expect, PickConstraints, load_cases
from promptlab.checks import Check, Observation, check_case
from promptlab.generate import generate_cases, holdout_recommender
from promptlab.runner import CaseRun, Lab, LabError, VariantRun
from promptlab.variants import Variant, parse_variant

__all__ = ["Case", "CaseFormatError", "CaseRun", "Check", "Expect", "Lab", "LabError", "Observation",
           "PickConstraints", "Variant", "VariantRun", "check_case", "generate_cases", "holdout_recommender",
           "load_cases", "parse_variant"]
