"""Pipelines (the seed's periodic DAG): tasks declared in aios.yaml, run by the shared DAG runner."""
