"""The core: settings, tenancy, tracker, versioning, deployment, monitoring.

Nothing here imports IPython, ipywidgets or altair; mlflow, scikit-learn and pandas are
imported inside the functions that need them.
"""
