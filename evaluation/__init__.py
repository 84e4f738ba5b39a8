"""gendet evaluation: generate-then-detect (prompt suites, judge rules, runner, reports)."""
