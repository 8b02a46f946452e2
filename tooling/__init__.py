"""Tools for compliance officers: policy tests, formatter, lint, diff, explanations, reports."""
