"""benchmarks/results_table.py: command-line overrides accumulate (regression: with
argparse nargs alone, a repeated --set silently kept only the last one)."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
  spec = importlib.util.spec_from_file_location(
      "results_table", os.path.join(ROOT, "benchmarks", "results_table.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_repeated_and_listed_overrides_accumulate():
  rt = _module()
  args = rt.parse_args(["--configs", "quickstart", "--set", "a=1", "--set", "b=2", "c=3"])
  assert args.set == ["a=1", "b=2", "c=3"]
  assert rt.parse_args(["--configs", "quickstart"]).set == []
