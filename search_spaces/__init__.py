"""The checklist as search spaces: data only, one YAML file per task family."""
